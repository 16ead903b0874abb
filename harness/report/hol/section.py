"""The head-of-line blocking section of report.md: tables, figures, and what the numbers
say in words. Every number in a sentence is computed from the points handed in; the
only fixed text is definitions and the (hedged) list of mechanisms that can couple
QUIC streams, shown only when the data shows them coupled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.measure.hol_stats import drop_stats, stack_cost
from harness.measure.roundtrips import textbook
from harness.measure.hol import DropTimeline, PointAnalysis, StreamTimeline
from harness.report.tables import fmt, table as _table

SWEEP_FIGURE = "hol-loss-sweep.png"
TIMELINE_FIGURE = "hol-drop-timeline.png"
H2_FAMILY = {"sse-h2", "grpc-stream"}     # streams multiplexed on one TCP connection
H3_FAMILY = {"sse-h3"}                    # streams multiplexed on one QUIC connection


@dataclass
class HolPoint:
    """One plan point of a HOL scenario, as the renderer needs it."""
    cell: str                    # cell label, e.g. "sse-h2" or "sse-h2+curl"
    protocol: str                # protocol id, e.g. "sse-h2"
    connections: int             # connections (gRPC: channels) the point's streams used
    link: str                    # the scenario's name for the link
    loss: float                  # loss probability per packet, 0..1 (0 for a single drop)
    rtt_ms: float
    itl_ms: float
    analysis: PointAnalysis
    timeline: DropTimeline | None = None   # single-drop points: hol.drop_timeline(...)
    single_drop: bool = False
    loss_direction: str = "down"           # "down", "up" or "both"
    mechanism: dict | None = None          # what its collateral stalls waited on

    @property
    def streams(self) -> int:
        return self.analysis.streams

    @property
    def multiplexed(self) -> bool:
        return self.analysis.streams_per_connection > 1

    @property
    def policy(self) -> str:
        conn = "channel" if self.protocol.startswith("grpc") else "connection"
        if not self.multiplexed:
            return f"one {conn} per stream"
        if self.connections == 1:
            return f"one {conn}"
        return f"{self.connections} {conn}s"

    @property
    def series(self) -> str:
        return f"{self.cell} on {self.policy}"

    def to_dict(self) -> dict:
        """JSON-ready (e.g. for summary.json), so a report can be rendered again later."""
        return {**{k: v for k, v in vars(self).items() if k not in ("analysis", "timeline")},
                "analysis": self.analysis.to_dict(),
                "timeline": None if self.timeline is None else self.timeline.to_dict()}

    @classmethod
    def from_summary(cls, cell: str, protocol: str, connections: int,
                     summary: dict) -> HolPoint | None:
        """From hol.hol_summary's dict (None when that point was skipped)."""
        if "analysis" not in summary:
            return None
        return cls(cell, protocol, connections, summary["link"], summary["loss"],
                   summary["rtt_ms"], summary["itl_ms"],
                   PointAnalysis.from_dict(summary["analysis"]),
                   None if summary.get("timeline") is None
                   else DropTimeline.from_dict(summary["timeline"]),
                   summary["single_drop"], summary["loss_direction"], summary.get("mechanism"))

    @classmethod
    def from_dict(cls, d: dict) -> HolPoint:
        return cls(**{**d, "analysis": PointAnalysis.from_dict(d["analysis"]),
                      "timeline": None if d.get("timeline") is None
                      else DropTimeline.from_dict(d["timeline"])})


def pct(loss: float) -> str:
    return f"{loss * 100:g}%"


def ms(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f} ms"


# ----------------------------------------------------------------------- tables


def sweep_table(points: list[HolPoint]) -> str:
    rows = sorted(points, key=lambda p: (p.rtt_ms, p.cell, p.connections, p.single_drop, p.loss))
    return _table(
        ["cell", "connections", "link", "loss", "RTT ms", "streams", "collateral stalls",
         "collateral ms/stream", "collateral share", "stalls/stream", "stall ms/stream",
         "unclassified stalls", "corr same conn", "corr across conns", "OWD p99 ms",
         "ITL p99 ms", "TTFT p99 ms", "errors"],
        [[p.cell, p.policy, p.link, "1 drop" if p.single_drop else pct(p.loss), fmt(p.rtt_ms, 0),
          fmt(a.streams), fmt(a.collateral_stalls), fmt(a.collateral_ms_per_stream, 1),
          "-" if a.collateral_share is None else f"{a.collateral_share:.0%}",
          fmt(a.stalls_per_stream, 2), fmt(a.stall_ms_per_stream, 1), fmt(a.unknown_stalls),
          fmt(a.corr_same_connection, 2), fmt(a.corr_cross_connection, 2),
          fmt(a.owd_p99_ms, 1), fmt(a.itl_p99_ms, 1), fmt(a.ttft_p99_ms, 1), fmt(a.errors)]
         for p in rows for a in [p.analysis]])


def timeline_table(p: HolPoint, tokens_shown: int = 8) -> str:
    """Per stream: excess one-way delay of the first tokens emitted after the drop."""
    tl = p.timeline
    assert tl is not None
    d = tl.drop
    owner = ", ".join(f"stream {s}" for s in d.streams) or "no stream (unattributed)"
    head = (f"**{p.series}** — dropped one {d.size} B {_dir(d.direction)} packet "
            f"(owner: {owner}, rule {d.rule}); {tl.drops_in_point} dropped data packet(s) "
            "in the point.")
    rows = []
    for s in tl.streams:
        after = [t.excess_ms for t in s.tokens
                 if t.emit_ms is not None and t.excess_ms is not None
                 and t.emit_ms >= -p.analysis.params.attribution_window_ms][:tokens_shown]
        rows.append([f"{s.stream}{' (owner)' if s.owner else ''}", s.connection,
                     " ".join(f"{x:+.0f}" for x in after) or "-", fmt(s.peak_excess_ms, 1),
                     f"yes, {s.stall_ms:.1f} ms, resumed +{s.resumed_ms:.1f} ms"
                     if s.stalled and s.stall_ms is not None and s.resumed_ms is not None else "no"])
    return "\n".join([head, "", _table(
        ["stream", "connection",
         f"excess one-way delay, first {tokens_shown} tokens after the drop (ms)",
         "peak ms", "stalled"], rows)])


def single_drop_table(points: list[HolPoint]) -> str:
    """Per series, over its single drops: the owner's and the collateral stall."""
    return _table(
        ["series", "drops (missed)", "owner's stall ms, median [min-max]",
         "collateral stall ms, median [min-max]", "drops with a collateral stall"],
        [[d.series, f"{d.drops}" + (f" ({d.missed})" if d.missed else ""),
          d.owner_ms.text() if d.owner_ms else "-",
          d.collateral_ms.text() if d.collateral_ms else "-",
          f"{d.with_collateral_stall} of {d.drops}"] for d in drop_stats(points)])


def stack_cost_table(rows: list[dict], points: list[HolPoint]) -> str | None:
    """Per multiplexed cell on the lossless link: what its transport costs per token,
    beside its single drops' collateral stall (the HOL gain) and the textbook round trips
    a new connection pays before its first byte."""
    costs = stack_cost(rows)
    if not costs:
        return None
    stalls = {d.series.split(" on ")[0]: d for d in drop_stats(p for p in points
                                                              if p.multiplexed)}
    def cell(c: dict) -> list[str]:
        d = stalls.get(c["cell"])
        trips, how = textbook(c["cell"], cold=True, tls=c["tls"])
        return [c["cell"] + (" (saturated)" if c["bound"] else ""), c["server"],
                fmt(c["packets_per_token"], 2), fmt(c["bytes_per_token"], 0),
                fmt(c["server_cpu_us_per_token"], 0), fmt(c["client_cpu_us_per_token"], 0),
                f"{trips} ({how})",
                d.collateral_ms.text() if d is not None and d.collateral_ms else "-"]
    return _table(["cell", "server", "packets down / token", "wire B down / token",
                   "server CPU us / token", "client CPU us / token",
                   "round trips to first byte, new connection",
                   "collateral stall ms per single drop"], [cell(c) for c in costs])


def first_per_series(probes: list[HolPoint]) -> list[HolPoint]:
    """One example drop per series (the earliest position), for timelines and figures."""
    return list({p.series: p for p in reversed(probes)}.values())[::-1]


def _dir(direction: str) -> str:
    return {"down": "downstream", "up": "upstream", "both": "two-way"}.get(direction, direction)


# -------------------------------------------------------------------- sentences


def _by(points: Iterable[HolPoint], key: Callable[[HolPoint], object]) -> dict:
    out: dict = defaultdict(list)
    for p in points:
        out[key(p)].append(p)
    return dict(sorted(out.items(), key=lambda kv: kv[0]))


def setup_sentence(points: list[HolPoint]) -> str:
    a = points[0].analysis.params
    lookback = "one RTT" if a.lookback_ms is None else f"{a.lookback_ms:g} ms"
    streams = sorted({p.streams for p in points})
    rtts = ", ".join(f"{r:g}" for r in sorted({p.rtt_ms for p in points}))
    itls = ", ".join(f"{i:g}" for i in sorted({p.itl_ms for p in points}))
    return (f"{'/'.join(map(str, streams))} token streams per point (run by the "
            f"scenario's concurrent users), one token every {itls} ms, base RTT {rtts} ms. A stall is a gap between two token "
            f"receipts over {a.stall_factor:g} x the token interval; its duration is the gap "
            "minus one interval. A stall is *collateral* when no packet attributed to its "
            f"own stream was dropped from {lookback} before the previous receipt to the "
            "stalled receipt (a lower bound: doubtful drops count as the stream's own, or "
            "leave the stall unclassified). A drop on a multiplexed connection belongs to "
            f"the stream that emitted a token last, at most {a.attribution_window_ms:g} ms "
            "before the packet entered the link.")


def collateral_sentences(sweep: list[HolPoint]) -> list[str]:
    out = []
    for (rtt, loss), group in _by((p for p in sweep if p.loss > 0),
                                  lambda p: (p.rtt_ms, p.loss)).items():
        group = sorted(group, key=lambda p: -(p.analysis.collateral_ms_per_stream or 0))
        parts = []
        for p in group:
            a = p.analysis
            share = ("" if a.collateral_share is None
                     else f", {a.collateral_share:.0%} of its stall time")
            extra = f"; {a.unknown_stalls} more unclassified" if a.unknown_stalls else ""
            n = a.collateral_stalls
            parts.append(f"{p.series} {'once' if n == 1 else f'{n} times'} "
                         f"({ms(a.collateral_ms_per_stream)} per stream{share}{extra})")
        out.append(f"- At {pct(loss)} {_dir(group[0].loss_direction)} loss and {rtt:g} ms RTT, "
                   f"streams stalled while they had lost none of their own packets: "
                   + "; ".join(parts) + ".")
    return out


def itl_sentences(sweep: list[HolPoint]) -> list[str]:
    """At each RTT's highest loss: ITL and TTFT p99 per series, multiplexed vs best baseline."""
    out = []
    for rtt, group in _by((p for p in sweep if p.loss > 0), lambda p: p.rtt_ms).items():
        top = max(p.loss for p in group)
        here = sorted((p for p in group if p.loss == top and p.analysis.itl_p99_ms is not None),
                      key=lambda p: p.analysis.itl_p99_ms)
        if not here:
            continue
        listing = "; ".join(f"{p.series} {ms(p.analysis.itl_p99_ms)} (TTFT p99 "
                            f"{ms(p.analysis.ttft_p99_ms)})" for p in here)
        line = f"- ITL p99 at {pct(top)} loss and {rtt:g} ms RTT, lowest first: {listing}."
        base = [p for p in here if not p.multiplexed]
        if base:
            best = base[0]
            for p in (p for p in here if p.multiplexed):
                line += (f" {p.series} had {p.analysis.itl_p99_ms / best.analysis.itl_p99_ms:.2f}x "
                         f"the ITL p99 of the best unmultiplexed baseline ({best.series}).")
        out.append(line)
    return out


def _stalled_others(tl: DropTimeline) -> tuple[list[StreamTimeline], list[StreamTimeline]]:
    clean = [s for s in tl.streams if s.lost_nothing]
    return clean, [s for s in clean if s.stalled]


def _owner_resumed(tl: DropTimeline) -> float | None:
    times = [s.resumed_ms for s in tl.streams if s.owner and s.resumed_ms is not None]
    return min(times) if times else None


def drop_sentence(p: HolPoint) -> str:
    tl = p.timeline
    assert tl is not None
    d = tl.drop
    owners = [s for s in tl.streams if s.owner]
    what = (f"stream {', '.join(str(s.stream) for s in owners)}'s data"
            if owners else "data no stream could be tied to")
    line = f"- {p.series}: one dropped {d.size}-byte {_dir(d.direction)} packet ({what})"
    for s in owners:
        line += (f" stalled stream {s.stream} for {s.stall_ms:.1f} ms (it resumed "
                 f"+{s.resumed_ms:.1f} ms after the drop)" if s.stalled
                 else f" delayed stream {s.stream} by up to {fmt(s.peak_excess_ms, 1)} ms "
                      "without a stall")
    clean, stalled = _stalled_others(tl)
    peak = max((s.peak_excess_ms or 0 for s in clean), default=0.0)
    if not clean:
        return line + "."
    if not stalled:
        return line + (f"; none of the {len(clean)} streams that lost nothing stalled (their "
                       f"peak excess one-way delay was {peak:.1f} ms).")
    line += (f"; {len(stalled)} of the {len(clean)} streams that lost nothing stalled too "
             f"(up to {max(s.stall_ms or 0 for s in stalled):.1f} ms; peak excess one-way "
             f"delay {peak:.1f} ms)")
    owner_at = _owner_resumed(tl)
    if owner_at is not None:
        skew = max(abs(s.resumed_ms - owner_at) for s in stalled if s.resumed_ms is not None)
        line += f", resuming within {skew:.1f} ms of the owner"
    return line + "."


def folklore_sentences(points: list[HolPoint]) -> list[str]:
    out = []
    h2 = [p for p in points if p.protocol in H2_FAMILY and p.multiplexed]
    h3 = [p for p in points if p.protocol in H3_FAMILY and p.multiplexed]
    h3_apart = [p for p in points if p.protocol in H3_FAMILY and not p.multiplexed]
    if h2:
        out += _h2_verdict(h2)
    if h3:
        out += _h3_verdict(h3, h2, h3_apart)
    return out


def _h2_verdict(h2: list[HolPoint]) -> list[str]:
    out = []
    for d in drop_stats(p for p in h2 if p.timeline):
        if not d.drops or not d.clean_streams:
            continue
        spread = f"collateral stall {d.collateral_ms.text()} ms" if d.collateral_ms else ""
        why = mechanism_text([p for p in h2 if p.single_drop and p.series == d.series])
        why = f"; what they waited on: {why}" if why else ""
        if d.with_collateral_stall == d.drops:
            out.append(f"- Consistent with \"HTTP/2 stalls all streams\": in {d.series}, "
                       f"every one of {d.drops} single drops stalled streams that lost "
                       f"nothing ({spread}, median [min-max]{why}).")
        else:
            out.append(f"- Partly consistent with \"HTTP/2 stalls all streams\": in {d.series}, "
                       f"{d.with_collateral_stall} of {d.drops} single drops stalled streams "
                       f"that lost nothing ({spread}): a stream waits only for tokens it emits "
                       "while the lost segment is being recovered.")
    lossy = [p for p in h2 if p.loss > 0 and not p.single_drop]
    if lossy:
        quiet = [p for p in lossy if p.analysis.collateral_stalls == 0]
        if quiet:
            out.append("- " + "; ".join(f"{p.series} at {pct(p.loss)} loss had no collateral "
                                        "stall" for p in quiet) +
                       ": there, multiplexing on one TCP connection did not stall streams "
                       "beyond their own losses.")
    return out


def _h3_verdict(h3: list[HolPoint], h2: list[HolPoint],
                h3_apart: list[HolPoint] = ()) -> list[str]:
    """Head-of-line blocking is answered by the single drops (one lost packet: does a
    stream that lost nothing wait?); streams stalling together under sustained loss is
    a different effect (what one connection's streams share) and is said apart, under
    its own name. No sentence claims more than its points show."""
    drops = [p for p in h3 if p.timeline]
    probes = [p for p in drops if _stalled_others(p.timeline)[1]]
    lossy = [p for p in h3 if p.loss > 0 and not p.single_drop]
    coupled = [p for p in lossy if p.analysis.collateral_stalls > 0]
    out = []
    stats = {d.series: d for d in drop_stats(drops)}
    if probes:
        out.append("- Not consistent with \"HTTP/3 has no head-of-line blocking\" in the "
                   "single drops: " + "; ".join(
                       f"{d.series}: {d.with_collateral_stall} of {d.drops} drops stalled a "
                       f"stream that lost nothing (collateral {d.collateral_ms.text()} ms)"
                       for d in stats.values() if d.with_collateral_stall and d.collateral_ms)
                   + f"; e.g. {_probe_evidence(probes[0])}. " + (
                       f"What they waited on, measured: {why}." if (why := mechanism_text(
                           [p for p in drops if p in probes])) else
                       "Whether by ordering or by state the streams share cannot be told "
                       "from these numbers (no sender state was recorded)."))
    elif drops:
        out.append("- Consistent with \"HTTP/3 has no head-of-line blocking\": " + "; ".join(
            f"in {d.series} none of {d.drops} single drops stalled a stream that lost "
            f"nothing (collateral delay {d.collateral_ms.text()} ms, median [min-max])"
            for d in stats.values() if d.drops and d.collateral_ms) + ".")
    if coupled:
        out.append("- Coupling under sustained loss (not head-of-line blocking, which the "
                   "single drops answer): " + "; ".join(_coupled_evidence(p, h2)
                                                        for p in coupled) + ".")
        out += _h3_coupling(h3, coupled, h3_apart)
        out += _stack_contrast(lossy)
        measured = [f"{p.series} at {pct(p.loss)} loss: {text}" for p in coupled
                    if (text := mechanism_text([p]))]
        if measured:
            out.append("  What the collateral stalls waited on, measured (server emit "
                       "stamps, the packet log, the stack's qlog): " + "; ".join(measured)
                       + ". QUIC orders data per stream only, so none of it is ordering.")
        else:
            out.append("  aioquic orders data per stream only, so QUIC's stream layer by "
                       "itself does not hold one stream behind another's loss. Streams that "
                       "stall together under many losses share one congestion window and "
                       "its loss recovery, one event loop per side and the HTTP/3 layer "
                       "above the streams; this run recorded no sender state to tell which.")
    elif lossy and not drops:
        out.append(f"- Consistent with \"HTTP/3 has no head-of-line blocking\": across "
                   f"{len(lossy)} lossy HTTP/3 point(s) no stream stalled without losing its "
                   "own packet.")
    return out


MECHANISM_NAMES = {"ordering": "ordering", "cwnd": "congestion window",
                   "app_server": "server application", "app_client": "client application",
                   "link": "link"}


def mechanism_text(points: list[HolPoint]) -> str | None:
    """The measured split of these points' collateral stall time (parts of 5% or more),
    e.g. "95% congestion window, 5% server application (aioquic qlog)"."""
    ms_ = {k: sum((p.mechanism or {}).get(f"{k}_ms") or 0.0 for p in points)
           for k in MECHANISM_NAMES}
    whole = sum((p.mechanism or {}).get("collateral_ms") or 0.0 for p in points)
    if whole < 1.0:
        return None
    parts = sorted(((v / whole, k) for k, v in ms_.items()), reverse=True)
    sources = sorted({p.mechanism.get("source") or "no sender state" for p in points
                      if p.mechanism})
    return (", ".join(f"{v:.0%} {MECHANISM_NAMES[k]}" for v, k in parts if abs(v) >= 0.05)
            + f" of {whole:,.0f} ms ({', '.join(sources)})")


def _probe_evidence(p: HolPoint) -> str:
    tl = p.timeline
    _, stalled = _stalled_others(tl)
    owner_at = _owner_resumed(tl)
    resumed = ", ".join(f"stream {s.stream} +{s.resumed_ms:.1f} ms" for s in stalled
                        if s.resumed_ms is not None)
    owner = ("stream " + ", ".join(map(str, tl.drop.streams)) if tl.drop.streams
             else "unattributed")
    text = (f"in {p.series} one dropped {tl.drop.size}-byte {_dir(tl.drop.direction)} "
            f"datagram ({owner}) stalled {len(stalled)} stream(s) that lost nothing "
            f"({resumed} after the drop")
    return text + (f"; the owner resumed at +{owner_at:.1f} ms)" if owner_at is not None
                   else ")")


def _coupled_evidence(p: HolPoint, h2: list[HolPoint]) -> str:
    a = p.analysis
    twin = next((q for q in h2 if q.loss == p.loss and q.rtt_ms == p.rtt_ms
                 and not q.single_drop), None)
    text = (f"at {pct(p.loss)} loss {p.series} had {a.collateral_stalls} collateral "
            f"stalls ({ms(a.collateral_ms_per_stream)} per stream")
    if twin is not None:
        text += (f" against {twin.analysis.collateral_stalls} "
                 f"({ms(twin.analysis.collateral_ms_per_stream)}) for {twin.series}")
    return text + ")"


def _stack_contrast(lossy: list[HolPoint]) -> list[str]:
    """Two QUIC stacks at the same loss: when one couples its streams and the other
    hardly does, coupling is that implementation's, not QUIC's."""
    top = max((p.loss for p in lossy), default=0)
    here = sorted((p for p in lossy if p.loss == top and p.analysis.collateral_ms_per_stream
                   is not None), key=lambda p: p.analysis.collateral_ms_per_stream)
    low, high = (here[0], here[-1]) if here else (None, None)
    a, b = (low.analysis.collateral_ms_per_stream, high.analysis.collateral_ms_per_stream) \
        if here else (0.0, 0.0)
    if len({p.cell for p in here}) < 2 or b < 3 * max(a, 1.0):
        return []
    return [f"  Two QUIC stacks, one connection each, at {pct(top)} loss: {high.series} "
            f"{b:.1f} ms of collateral stall per stream, {low.series} {a:.1f} ms. Coupling "
            "under sustained loss is a property of the implementation (how it recovers, "
            "paces and schedules its streams), not of QUIC."]


def _h3_coupling(h3: list[HolPoint], coupled: list[HolPoint],
                 apart: list[HolPoint]) -> list[str]:
    """Which per-connection mechanism the data points to, when it can say: a single drop
    that stalled no other stream, sustained loss that did, and one connection per
    stream that did not."""
    clean_probes = [p for p in h3 if p.timeline and not _stalled_others(p.timeline)[1]]
    quiet_apart = [q for p in coupled for q in apart if q.loss == p.loss
                   and q.rtt_ms == p.rtt_ms and not q.single_drop
                   and q.analysis.collateral_stalls <= 0.1 * p.analysis.collateral_stalls]
    if not (clean_probes and quiet_apart):
        return []
    p, q = coupled[-1], next(q for q in quiet_apart if q.loss == coupled[-1].loss)
    return [(f"  What couples them builds up over many losses: one dropped packet stalled no "
             f"other stream on {clean_probes[0].series}, while at {pct(p.loss)} loss "
             f"{p.series} had {p.analysis.collateral_stalls} collateral stalls and "
             f"{q.series} {q.analysis.collateral_stalls}. That points away from per-stream "
             "ordering and to state the streams of one connection share: its congestion "
             "window (one Reno window, cut at every loss, for every stream) and its loss "
             "recovery.")]


def trend_sentences(sweep: list[HolPoint]) -> list[str]:
    """Per multiplexed series, collateral stall time per stream as loss grows."""
    out = []
    for rtt, group in _by((p for p in sweep if p.multiplexed), lambda p: p.rtt_ms).items():
        lines = []
        for series, pts in _by(group, lambda p: p.series).items():
            pts = sorted(pts, key=lambda p: p.loss)
            if len(pts) > 1:
                lines.append(f"{series} " + ", ".join(
                    f"{ms(p.analysis.collateral_ms_per_stream)} at {pct(p.loss)}" for p in pts))
        if lines:
            out.append(f"- Collateral stall time per stream as loss grows (RTT {rtt:g} ms): "
                       + "; ".join(lines) + ".")
    return out


# ---------------------------------------------------------------------- figures


def loss_sweep_figure(sweep: list[HolPoint], path: Path) -> Path | None:
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    lossy = [p for p in sweep if not p.single_drop]
    if len({p.loss for p in lossy}) < 2:
        return None
    several_rtts = len({p.rtt_ms for p in lossy}) > 1
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    metrics = [("collateral_ms_per_stream", "collateral stall ms per stream"),
               ("itl_p99_ms", "ITL p99 ms")]
    for ax, (key, label) in zip(axes, metrics):
        for (series, rtt), pts in _by(lossy, lambda p: (p.series, p.rtt_ms)).items():
            pts = sorted(pts, key=lambda p: p.loss)
            xy = [(p.loss * 100, getattr(p.analysis, key)) for p in pts
                  if getattr(p.analysis, key) is not None]
            if xy:
                ax.plot(*zip(*xy), marker="o", linestyle="-" if pts[0].multiplexed else "--",
                        label=series + (f", RTT {rtt:g} ms" if several_rtts else ""))
        ax.set_xlabel("packet loss %")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Head-of-line blocking under loss (dashed: one connection per stream)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def drop_timeline_figure(drops: list[HolPoint], path: Path) -> Path | None:
    from matplotlib.figure import Figure

    # At most six panels: the multiplexed HTTP/2 and HTTP/3 connections first (the
    # comparison the figure exists for), then other multiplexed ones, then baselines.
    order = {"sse-h2": 0, "sse-h3": 1}
    drops = sorted((p for p in drops if p.timeline),
                   key=lambda p: (not p.multiplexed, order.get(p.protocol, 2)))[:6]
    if not drops:
        return None
    fig = Figure(figsize=(3.6 * len(drops), 6.5))
    axes = fig.subplots(2, len(drops), squeeze=False)
    for col, p in enumerate(drops):
        raster, delay = axes[0][col], axes[1][col]
        for s in p.timeline.streams:
            color = "tab:red" if s.owner else "tab:blue"
            raster.plot([t.recv_ms for t in s.tokens], [s.stream] * len(s.tokens), "|",
                        color=color, markersize=8)
            pts = [(t.emit_ms, t.excess_ms) for t in s.tokens
                   if t.emit_ms is not None and t.excess_ms is not None]
            if pts:
                delay.plot(*zip(*pts), color=color, linewidth=2 if s.owner else 0.8,
                           alpha=1 if s.owner else 0.6)
        for ax in (raster, delay):
            ax.axvline(0, color="black", linestyle=":", linewidth=1)
            ax.grid(alpha=0.3)
        raster.set_yticks([s.stream for s in p.timeline.streams])
        raster.set_title(p.series, fontsize=9)
        raster.set_xlabel("token received, ms from the drop")
        delay.set_xlabel("token emitted, ms from the drop")
        if col == 0:
            raster.set_ylabel("stream (red: lost the packet)")
            delay.set_ylabel("excess one-way delay ms")
    fig.suptitle("One dropped packet: per-stream delivery")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def missed_drop_sentences(points: list[HolPoint]) -> list[str]:
    """Single-drop points whose drop-list dropped no token packet: say so, not nothing."""
    missed = [p for p in points if p.single_drop and not p.timeline]
    if not missed:
        return []
    return [f"- {', '.join(sorted({p.series for p in missed}))}: the drop-list dropped no "
            "token-carrying packet in this point (no packet matched its filter, or the drop "
            "fell outside every stream), so there is no drop timeline for it."]
