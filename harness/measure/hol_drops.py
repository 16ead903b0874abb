"""Stream traces (what a client saw of each token) and which stream each lost packet
delayed: the inputs of harness.measure.hol's analysis (its docstring has the method)."""

from __future__ import annotations

import gzip
import json
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.measure.packetlog import PacketRecord

if TYPE_CHECKING:
    pass

MS = 1_000_000
TRACE_SCHEMA = 1

# ----------------------------------------------------------------------- traces


@dataclass
class StreamTrace:
    """What one client saw of one token stream."""
    stream: int                                  # unique within a point
    connection: str                              # equal for streams sharing a connection
    client_port: int | None                      # client's local port of that connection
    t_start_ns: int                              # request start
    tokens: list[tuple[int, int | None, int]]    # (server index, emit_ns or None, recv_ns)
    error: str | None = None


def save_traces(path: Path | str, traces: Iterable[StreamTrace]) -> None:
    doc = {"schema": TRACE_SCHEMA, "traces": [asdict(t) for t in traces]}
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(doc, fh, separators=(",", ":"))


def load_traces(path: Path | str) -> list[StreamTrace]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        doc = json.load(fh)
    if doc.get("schema") != TRACE_SCHEMA:
        raise ValueError(f"{path}: trace schema {doc.get('schema')!r}, expected {TRACE_SCHEMA}")
    return [StreamTrace(**{**t, "tokens": [tuple(x) for x in t["tokens"]]})
            for t in doc["traces"]]


# ----------------------------------------------------------------------- params


@dataclass(frozen=True)
class HolParams:
    itl_ms: float                        # the server's token interval
    rtt_ms: float                        # the link's base round-trip time
    stall_factor: float = 2.0            # k: a stall is a gap > k x itl
    attribution_window_ms: float = 2.0   # a drop belongs to an emit at most this old
    tie_ms: float = 0.5                  # emits this close to the latest are co-owners
    lookback_ms: float | None = None     # own-stall window before the previous receipt; None = RTT
    timeline_before_ms: float = 100.0
    timeline_after_ms: float = 300.0

    def __post_init__(self) -> None:
        if not self.itl_ms > 0:
            raise ValueError(f"itl_ms must be > 0 (got {self.itl_ms!r}): stalls are "
                             "measured in token intervals")
        if self.stall_factor <= 1:
            raise ValueError(f"stall_factor must be > 1 (got {self.stall_factor!r})")

    @property
    def interval_ns(self) -> int:
        return round(self.itl_ms * MS)

    @property
    def lookback_ns(self) -> int:
        return round((self.rtt_ms if self.lookback_ms is None else self.lookback_ms) * MS)


# ------------------------------------------------------------------ attribution


@dataclass(frozen=True)
class DropAttribution:
    t_ns: int
    direction: str
    client_port: int
    size: int
    payload: int
    outcome: str
    streams: tuple[int, ...]     # owners; empty when unattributed
    rule: str                    # only-stream | emit-time | start-time | ambiguous |
                                 # no-recent-event | no-payload | foreign-port


def attribute_drops(traces: list[StreamTrace], packets: Iterable[PacketRecord],
                    params: HolParams) -> list[DropAttribution]:
    """Every dropped packet, with the stream(s) it belonged to (rules: module docstring)."""
    on_port: dict[int, list[StreamTrace]] = defaultdict(list)
    for t in traces:
        if t.client_port is not None:
            on_port[t.client_port].append(t)
    events = {port: {"down": _events((tok[1], t.stream) for t in ts for tok in t.tokens),
                     "up": _events((t.t_start_ns, t.stream) for t in ts)}
              for port, ts in on_port.items() if len(ts) > 1}
    window, tie = round(params.attribution_window_ms * MS), round(params.tie_ms * MS)
    packets = list(packets)
    typical = _typical_payload(packets, set(events))
    out = []
    for p in packets:
        if not p.dropped:
            continue
        port, owners, rule = p.client_port, (), "foreign-port"
        if port in on_port:
            if p.payload <= 0:
                rule = "no-payload"
            elif len(on_port[port]) == 1:
                owners, rule = (on_port[port][0].stream,), "only-stream"
            else:
                owners = _latest_before(*events[port][p.direction], p.t_ns, window, tie)
                rule = ("no-recent-event" if not owners else "ambiguous" if len(owners) > 1
                        else "emit-time" if p.direction == "down" else "start-time")
                carried = _tokens_carried(p, typical.get(port))
                if p.direction == "down" and carried > max(1, len(owners)):
                    # A packet several tokens long carried the tokens the server had
                    # queued: the `carried` latest emitters within one token interval.
                    owners = _latest_n(*events[port]["down"], p.t_ns,
                                       round(params.itl_ms * MS), carried) or owners
                    rule = "coalesced"
        out.append(DropAttribution(p.t_ns, p.direction, port, p.size, p.payload, p.outcome,
                                   owners, rule))
    return out


def _typical_payload(packets: list[PacketRecord], ports: set[int]) -> dict[int, float]:
    """Per multiplexed port, the median payload of delivered downstream data packets:
    most carry one token, so a dropped packet k times that size carried about k."""
    sizes: dict[int, list[int]] = defaultdict(list)
    for p in packets:
        if p.direction == "down" and p.payload > 0 and not p.dropped and p.client_port in ports:
            sizes[p.client_port].append(p.payload)
    return {port: float(np.median(v)) for port, v in sizes.items() if len(v) >= 10}


def _tokens_carried(p: PacketRecord, typical: float | None) -> int:
    return max(1, round(p.payload / typical)) if typical else 1


def _latest_n(times: list[int], streams: list[int], t: int, window: int,
              n: int) -> tuple[int, ...]:
    """The n distinct streams that emitted most recently before t, within window."""
    found: list[int] = []
    i = bisect_right(times, t) - 1
    while i >= 0 and times[i] >= t - window and len(found) < n:
        if streams[i] not in found:
            found.append(streams[i])
        i -= 1
    return tuple(sorted(found))


def _events(pairs: Iterable[tuple[int | None, int]]) -> tuple[list[int], list[int]]:
    known = sorted((t, s) for t, s in pairs if t is not None)
    return [t for t, _ in known], [s for _, s in known]


def _latest_before(times: list[int], streams: list[int], t: int, window: int,
                   tie: int) -> tuple[int, ...]:
    i = bisect_right(times, t)
    if i == 0 or times[i - 1] < t - window:
        return ()
    floor = max(times[i - 1] - tie, t - window)
    j = bisect_left(times, floor, 0, i)
    return tuple(sorted(set(streams[j:i])))
