"""Repeated single drops, summarised per series (cell and connection policy).

Each single-drop point drops one packet of one stream (its owner) at a different
position. Per drop: the owner's stall, as the peak excess one-way delay of its tokens
emitted after the drop, and the collateral stall, the largest peak excess among the
streams that lost nothing (0 when none was delayed at all), plus whether any of those
crossed the stall threshold. Per series: median [min-max] over its drops, so one drop
that happened to land badly does not make the headline. Pure: timelines in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any, Iterable

from harness.measure.saturation import is_bound


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> "Spread | None":
        return cls(median(values), min(values), max(values)) if values else None

    def text(self) -> str:
        return f"{self.median:.1f} [{self.low:.1f}-{self.high:.1f}]"


@dataclass(frozen=True)
class DropStats:
    series: str
    drops: int                   # single-drop points whose drop hit a token packet
    missed: int                  # single-drop points whose drop-list dropped nothing usable
    owner_ms: Spread | None      # the owner's peak excess one-way delay, ms
    collateral_ms: Spread | None  # the largest among streams that lost nothing, ms
    with_collateral_stall: int   # drops after which a stream that lost nothing stalled
    clean_streams: int           # streams that lost nothing, in the largest drop


def probe_numbers(timeline: Any) -> tuple[float | None, float, bool, int]:
    """(owner's peak excess ms, collateral peak excess ms, a clean stream stalled,
    clean streams) of one DropTimeline."""
    owners = [s.peak_excess_ms for s in timeline.streams
              if s.owner and s.peak_excess_ms is not None]
    clean = [s for s in timeline.streams if s.lost_nothing]
    collateral = max((max(0.0, s.peak_excess_ms or 0.0) for s in clean), default=0.0)
    return (max(owners) if owners else None, collateral, any(s.stalled for s in clean),
            len(clean))


def drop_stats(points: Iterable[Any]) -> list[DropStats]:
    """One DropStats per series, from HOL points (.series, .single_drop, .timeline)."""
    by: dict[str, list[Any]] = {}
    for p in points:
        if p.single_drop:
            by.setdefault(p.series, []).append(p)
    out = []
    for series, mine in sorted(by.items()):
        hits = [probe_numbers(p.timeline) for p in mine if p.timeline]
        out.append(DropStats(
            series, len(hits), len(mine) - len(hits),
            Spread.of([o for o, _, _, _ in hits if o is not None]),
            Spread.of([c for _, c, _, _ in hits]),
            sum(1 for _, _, stalled, _ in hits if stalled),
            max((n for _, _, _, n in hits), default=0)))
    return out


def stack_cost(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each stack's transport costs per token on the lossless link, one connection
    carrying every stream: packets and wire bytes down, server and client CPU (the UDP
    side of "HTTP/3 solves this but introduces UDP complexity", beside the HOL gain)."""
    out = []
    for r in rows:
        hol = (r.get("hol") or [{}])[0]
        tokens = r.get("tokens_per_request")
        if (hol.get("loss") or hol.get("single_drop") or not tokens or not r.get("n")
                or str(r.get("connections_policy")) not in ("1", "None")):
            continue
        def per_token(v: float | None, scale: float = 1.0) -> float | None:
            return None if v is None else v * scale / tokens
        out.append({"cell": r["cell"], "server": r.get("server_impl", ""),
                    "tls": bool(r.get("tls")),
                    "packets_per_token": per_token(r.get("packets_down")),
                    "bytes_per_token": per_token(r.get("wire_down_bytes")),
                    "server_cpu_us_per_token": per_token(r.get("server_cpu_ms_per_req"), 1000),
                    "client_cpu_us_per_token": per_token(r.get("client_cpu_ms_per_req"), 1000),
                    "bound": is_bound(r)})
    return sorted(out, key=lambda c: c["cell"])
