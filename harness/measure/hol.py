"""Head-of-line blocking: which stream lost which packet, which streams stalled, and
whether each stall was the stream's own or collateral. Pure analysis of one plan
point's stream traces and packet log; the only I/O is saving and loading traces.

Definitions (DEFINITIONS below repeats them for the report):

- Stall: a gap between two successive token receipts of one stream greater than
  k x the token interval; its duration is gap - interval (the time the token was
  overdue). Tokens that arrive in one chunk (same recv_ns) have gap 0, so the burst
  after a stall is one stall, not several. k defaults to 2: event-loop jitter on a busy
  2-core host moves receipts by well under one interval, while recovering a lost packet
  costs at least one RTT, i.e. a gap of interval + RTT (3 intervals at RTT 40 ms, ITL
  20 ms). Any k in (1 + jitter/interval, 1 + RTT/interval) separates the two.
- Attribution of a dropped packet with payload (ACKs and SYNs carry no tokens):
  on a connection that carries one stream it belongs to that stream. On a multiplexed
  connection a downstream drop belongs to the stream whose token was emitted most
  recently before the packet entered the link, within `attribution_window_ms`; streams
  whose latest emit is within `tie_ms` of that one are candidates too (ambiguous: all
  of them own it); no emit in the window leaves it unattributed. An upstream drop is
  matched the same way against stream start times (requests go up).
  A QUIC packet or a TCP segment may carry several streams' frames when the sender
  queued them (a busy server, a cwnd-limited connection): a dropped downstream packet
  k times the connection's median data packet is taken to carry the tokens of the k
  streams that emitted last within one token interval.
  Limits: a TLS record may span packets (hence ties); a retransmission leaves long
  after its emit and is unattributed (or, if another stream just emitted,
  mis-attributed); a downstream pure QUIC ACK still has UDP payload and may be
  attributed to whoever emitted last; the size rule guesses which streams a coalesced
  packet carried. An unattributed drop makes nearby stalls *unknown*, not collateral;
  a wrong guess can move a stall between own and collateral.
- Own stall: some downstream drop attributed to the stream entered the link in
  [previous receipt - lookback, stalled receipt], lookback = one RTT by default (the
  nominal one-way delay, RTT/2, plus as much again for queueing and scheduling).
  Unknown: not own, but a downstream data drop on the same connection in that window
  could not be attributed (or the stream's port or the packet log is missing).
  Collateral: neither: the stream lost none of its own packets around the stall.
  Upstream drops never make a stall own: tokens travel downstream, and a stall after a
  lost ACK or WINDOW_UPDATE is one the stream suffered without losing its own data.
- Stall correlation: each stream becomes a 0/1 series on a grid of one-token-interval
  bins spanning the point (1 where the stream was overdue, i.e. inside
  [receipt - duration, receipt] of a stall); the value is the mean Pearson correlation
  over stream pairs, separately for pairs sharing a connection and pairs on different
  connections. A pair where only one stream ever stalled counts as 0 (they never
  stalled together); pairs where neither stalled are left out.
- Percentiles are nearest-rank over the point's pooled values: one-way delay
  (recv - emit), ITL (gaps between distinct receipt times), TTFT (start -> first token).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import combinations, pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.measure.hol_drops import (MS, DropAttribution, HolParams, StreamTrace,
                                        attribute_drops)
from harness.measure.packetlog import PacketRecord

if TYPE_CHECKING:
    from harness.scenario.linkspec import DirectionSpec, LinkSpec

DEFINITIONS = {
    "stall": "gap between successive token receipts of one stream > k x token interval; "
             "duration = gap - interval",
    "own stall": "a downstream packet attributed to this stream was dropped between "
                 "(previous receipt - lookback) and the stalled receipt",
    "collateral stall": "a stall with no own drop and no unattributed drop on its "
                        "connection in that window (a lower bound)",
    "unclassified stall": "not own, but an unattributed downstream data drop on its "
                          "connection fell in the window (or no port / packet log)",
    "collateral share": "collateral stall time / all stall time",
    "attribution": "one-stream connection: every dropped data packet on its port; "
                   "multiplexed: the stream(s) that emitted last before the drop, within "
                   "the attribution window; a dropped packet k times the connection's "
                   "median data packet long carried the k latest emitters' tokens (one "
                   "token interval back)",
    "stall correlation": "mean pairwise Pearson correlation of per-stream overdue "
                         "indicators on a grid of one-token-interval bins",
    "owd": "token receipt - server emit stamp (one host clock)",
    "mechanism split": "a collateral stall's time, leg by leg of its token's path (server "
                       "emit -> on the link -> released -> read) against the token before "
                       "it: ordering (released, held behind an unrepaired lower TCP "
                       "sequence range), congestion window (waiting at the sender while "
                       "tcp_info / qlog says the window was full), application (emitted "
                       "late, waiting at the sender with window, or read late), link",
}

# ----------------------------------------------------------------------- stalls


@dataclass(frozen=True)
class Stall:
    stream: int
    token: int           # server index of the token whose late receipt ended the stall
    start_ns: int        # previous receipt
    end_ns: int          # the stalled receipt
    duration_ns: int     # gap - interval: how long the token was overdue
    kind: str            # own | collateral | unknown


def receipts(trace: StreamTrace) -> list[tuple[int, int | None, int]]:
    """Tokens in the order they arrived (a chunk's tokens by server index)."""
    return sorted(trace.tokens, key=lambda tok: (tok[2], tok[0]))


def find_stalls(trace: StreamTrace, params: HolParams) -> list[tuple[int, int, int]]:
    """(token index, previous receipt, receipt) for each gap > k x interval."""
    limit = params.stall_factor * params.interval_ns
    toks = receipts(trace)
    return [(cur[0], prev[2], cur[2]) for prev, cur in pairwise(toks)
            if cur[2] - prev[2] > limit]


def _any_in(sorted_times: list[int], lo: int, hi: int) -> bool:
    i = bisect_left(sorted_times, lo)
    return i < len(sorted_times) and sorted_times[i] <= hi


def classify_stalls(trace: StreamTrace, drops: list[DropAttribution] | None,
                    params: HolParams) -> list[Stall]:
    raw = find_stalls(trace, params)
    known = drops is not None and trace.client_port is not None
    own = sorted(d.t_ns for d in drops or () if d.direction == "down" and d.payload > 0
                 and trace.stream in d.streams)
    orphan = sorted(d.t_ns for d in drops or () if d.direction == "down"
                    and d.rule == "no-recent-event" and d.client_port == trace.client_port)
    out = []
    for token, start, end in raw:
        lo = start - params.lookback_ns
        kind = ("unknown" if not known else "own" if _any_in(own, lo, end)
                else "unknown" if _any_in(orphan, lo, end) else "collateral")
        out.append(Stall(trace.stream, token, start, end, end - start - params.interval_ns, kind))
    return out


# ------------------------------------------------------------------- aggregates


@dataclass
class StreamStats:
    stream: int
    connection: str
    client_port: int | None
    tokens: int
    error: str | None
    own_drops: int               # downstream data packets attributed to this stream
    stalls: int
    stall_ms: float
    max_stall_ms: float
    collateral_stalls: int
    collateral_ms: float
    ttft_ms: float | None


@dataclass
class PointAnalysis:
    params: HolParams
    streams: int                 # streams in the point
    active_streams: int          # streams that received at least one token
    errors: int
    connections: int
    streams_per_connection: int  # most streams in flight at once on one connection
    tokens: int
    drops_down: int              # dropped downstream packets with payload
    drops_up: int
    unattributed_down: int       # of drops_down, on a traced port but no owner
    stalls: int
    stall_ms: float
    stalls_per_stream: float | None
    stall_ms_per_stream: float | None
    max_stall_ms: float | None
    own_stalls: int
    collateral_stalls: int
    collateral_ms: float
    unknown_stalls: int
    collateral_per_stream: float | None
    collateral_ms_per_stream: float | None
    collateral_share: float | None     # collateral stall time / all stall time
    stalls_on_clean_streams: int       # stalls on streams with no own drop at all
    corr_same_connection: float | None
    corr_cross_connection: float | None
    owd_p50_ms: float | None
    owd_p99_ms: float | None
    owd_max_ms: float | None
    itl_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    per_stream: list[StreamStats] = field(default_factory=list)
    stall_list: list[Stall] = field(default_factory=list)
    drops: list[DropAttribution] | None = None

    def flat(self) -> dict[str, Any]:
        """Scalar fields only, prefixed `hol_`, for a summary row."""
        skip = {"params", "per_stream", "stall_list", "drops"}
        return {f"hol_{k}": v for k, v in asdict(self).items() if k not in skip}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PointAnalysis:
        drops = d.get("drops")
        return cls(**{**d, "params": HolParams(**d["params"]),
                      "per_stream": [StreamStats(**s) for s in d.get("per_stream", [])],
                      "stall_list": [Stall(**s) for s in d.get("stall_list", [])],
                      "drops": None if drops is None else
                      [DropAttribution(**{**x, "streams": tuple(x["streams"])}) for x in drops]})


def percentile_ms(values_ns: list[int] | np.ndarray, q: float) -> float | None:
    if len(values_ns) == 0:
        return None
    return float(np.percentile(np.asarray(values_ns, dtype=np.int64), q,
                               method="inverted_cdf")) / MS


def analyse_point(traces: Iterable[StreamTrace], packets: Iterable[PacketRecord] | None,
                  params: HolParams) -> PointAnalysis:
    """Everything the HOL report needs from one point. packets=None: no packet log, so
    stalls cannot be classified (all 'unknown')."""
    traces = sorted(traces, key=lambda t: t.stream)
    drops = None if packets is None else attribute_drops(traces, packets, params)
    stalls = {t.stream: classify_stalls(t, drops, params) for t in traces}
    per_stream = [_stream_stats(t, stalls[t.stream], drops) for t in traces]
    every = [s for t in traces for s in stalls[t.stream]]
    active = [s for s in per_stream if s.tokens]
    n = len(active)
    stall_ms = sum(s.duration_ns for s in every) / MS
    collateral = [s for s in every if s.kind == "collateral"]
    collateral_ms = sum(s.duration_ns for s in collateral) / MS
    owd = [tok[2] - tok[1] for t in traces for tok in t.tokens if tok[1] is not None]
    itl = [g for t in traces for g in _chunk_gaps(t)]
    ttft = [min(tok[2] for tok in t.tokens) - t.t_start_ns for t in traces if t.tokens]
    same, cross = stall_correlation(traces, stalls, params)
    down = [d for d in drops or () if d.direction == "down" and d.payload > 0]
    return PointAnalysis(
        params=params, streams=len(traces), active_streams=n,
        errors=sum(1 for t in traces if t.error), connections=len({t.connection for t in traces}),
        streams_per_connection=_most_concurrent(traces),
        tokens=sum(len(t.tokens) for t in traces),
        drops_down=len(down), drops_up=sum(1 for d in drops or () if d.direction == "up"),
        unattributed_down=sum(1 for d in down if not d.streams and d.rule != "foreign-port"),
        stalls=len(every), stall_ms=stall_ms,
        stalls_per_stream=len(every) / n if n else None,
        stall_ms_per_stream=stall_ms / n if n else None,
        max_stall_ms=max((s.duration_ns for s in every), default=0) / MS if n else None,
        own_stalls=sum(1 for s in every if s.kind == "own"),
        collateral_stalls=len(collateral), collateral_ms=collateral_ms,
        unknown_stalls=sum(1 for s in every if s.kind == "unknown"),
        collateral_per_stream=len(collateral) / n if n else None,
        collateral_ms_per_stream=collateral_ms / n if n else None,
        collateral_share=collateral_ms / stall_ms if stall_ms else None,
        stalls_on_clean_streams=sum(s.stalls for s in per_stream
                                    if drops is not None and s.own_drops == 0),
        corr_same_connection=same, corr_cross_connection=cross,
        owd_p50_ms=percentile_ms(owd, 50), owd_p99_ms=percentile_ms(owd, 99),
        owd_max_ms=max(owd) / MS if owd else None,
        itl_p99_ms=percentile_ms(itl, 99),
        ttft_p50_ms=percentile_ms(ttft, 50), ttft_p99_ms=percentile_ms(ttft, 99),
        per_stream=per_stream, stall_list=every, drops=drops)


def _most_concurrent(traces: list[StreamTrace]) -> int:
    """The most streams in flight at once on one connection: 1 means every stream had
    its connection to itself, even when a closed loop reused it for the next stream."""
    best = 0
    by_conn: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for t in traces:
        end = max((tok[2] for tok in t.tokens), default=t.t_start_ns)
        by_conn[t.connection] += [(t.t_start_ns, 1), (end, -1)]
    for events in by_conn.values():
        live = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):   # ends before starts
            live += step
            best = max(best, live)
    return best


def _chunk_gaps(trace: StreamTrace) -> list[int]:
    times = sorted({tok[2] for tok in trace.tokens})
    return [b - a for a, b in pairwise(times)]


def _stream_stats(t: StreamTrace, stalls: list[Stall],
                  drops: list[DropAttribution] | None) -> StreamStats:
    collateral = [s for s in stalls if s.kind == "collateral"]
    return StreamStats(
        stream=t.stream, connection=t.connection, client_port=t.client_port,
        tokens=len(t.tokens), error=t.error,
        own_drops=sum(1 for d in drops or () if d.direction == "down" and d.payload > 0
                      and t.stream in d.streams),
        stalls=len(stalls), stall_ms=sum(s.duration_ns for s in stalls) / MS,
        max_stall_ms=max((s.duration_ns for s in stalls), default=0) / MS,
        collateral_stalls=len(collateral),
        collateral_ms=sum(s.duration_ns for s in collateral) / MS,
        ttft_ms=(min(tok[2] for tok in t.tokens) - t.t_start_ns) / MS if t.tokens else None)


# ------------------------------------------------------------------ correlation


def overdue_indicators(traces: list[StreamTrace], stalls: dict[int, list[Stall]],
                       bin_ns: int) -> dict[int, np.ndarray]:
    """Per stream, 1 in every bin where it waited for an overdue token."""
    recvs = [tok[2] for t in traces for tok in t.tokens]
    if not recvs or bin_ns <= 0:
        return {}
    t0 = min(recvs)
    n = (max(recvs) - t0) // bin_ns + 1
    out = {}
    for t in traces:
        x = np.zeros(n, dtype=np.int8)
        for s in stalls.get(t.stream, ()):
            x[(s.end_ns - s.duration_ns - t0) // bin_ns:(s.end_ns - t0) // bin_ns + 1] = 1
        out[t.stream] = x
    return out


def _pair_corr(a: np.ndarray, b: np.ndarray) -> float | None:
    flat_a, flat_b = a.min() == a.max(), b.min() == b.max()
    if flat_a and flat_b:
        return None                       # neither stalled: nothing to correlate
    if flat_a or flat_b:
        return 0.0                        # one stalled, the other never did
    return float(np.corrcoef(a, b)[0, 1])


def stall_correlation(traces: list[StreamTrace], stalls: dict[int, list[Stall]],
                      params: HolParams) -> tuple[float | None, float | None]:
    """(mean over pairs sharing a connection, mean over pairs on different ones)."""
    ind = overdue_indicators(traces, stalls, params.interval_ns)
    same: list[float] = []
    cross: list[float] = []
    for a, b in combinations(traces, 2):
        if a.stream not in ind:
            continue
        r = _pair_corr(ind[a.stream], ind[b.stream])
        if r is not None:
            (same if a.connection == b.connection else cross).append(r)
    return (float(np.mean(same)) if same else None, float(np.mean(cross)) if cross else None)


# --------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class TimelineToken:
    index: int
    emit_ms: float | None        # relative to the drop
    recv_ms: float               # relative to the drop
    owd_ms: float | None
    excess_ms: float | None      # owd - the stream's owd before the drop


@dataclass
class StreamTimeline:
    stream: int
    connection: str
    owner: bool                  # the dropped packet was attributed to this stream
    own_drops: int               # downstream drops attributed to it inside the window
    baseline_owd_ms: float | None
    tokens: list[TimelineToken]
    peak_excess_ms: float | None  # over tokens emitted after the drop
    stalled: bool                # a stall ended after the drop, inside the window
    resumed_ms: float | None     # that stall's end, relative to the drop
    stall_ms: float | None       # that stall's duration

    @property
    def lost_nothing(self) -> bool:
        return not self.owner and self.own_drops == 0


@dataclass
class DropTimeline:
    drop: DropAttribution
    drops_in_point: int          # dropped data packets in the point (1 for a clean probe)
    streams: list[StreamTimeline]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DropTimeline:
        return cls(drop=DropAttribution(**{**d["drop"], "streams": tuple(d["drop"]["streams"])}),
                   drops_in_point=d["drops_in_point"],
                   streams=[StreamTimeline(**{**s, "tokens": [TimelineToken(**x) for x in s["tokens"]]})
                            for s in d["streams"]])


def probe_drop(drops: list[DropAttribution]) -> DropAttribution | None:
    """The single-drop probe: the first drop-list data packet, else the first downstream
    data drop, else the first data drop."""
    data = [d for d in drops if d.payload > 0 and d.rule != "foreign-port"]
    for keep in (lambda d: d.outcome == "droplist", lambda d: d.direction == "down",
                 lambda d: True):
        chosen = [d for d in data if keep(d)]
        if chosen:
            return min(chosen, key=lambda d: d.t_ns)
    return None


def _alive_at(trace: StreamTrace, t_ns: int) -> bool:
    """Whether the stream was emitting tokens across t_ns: only those can be held up by
    a drop at t_ns (a closed loop runs several rounds of streams per point)."""
    stamps = [e if e is not None else r for _, e, r in trace.tokens]
    return bool(stamps) and min(stamps) < t_ns < max(stamps)


def drop_timeline(traces: Iterable[StreamTrace], analysis: PointAnalysis) -> DropTimeline | None:
    """Per stream, the tokens received around the probe drop with their one-way delay."""
    if not analysis.drops:
        return None
    drop = probe_drop(analysis.drops)
    if drop is None:
        return None
    p, t = analysis.params, drop.t_ns
    lo, hi = t - round(p.timeline_before_ms * MS), t + round(p.timeline_after_ms * MS)
    after = t - round(p.attribution_window_ms * MS)   # the dropped token itself counts
    stalls = defaultdict(list)
    for s in analysis.stall_list:
        stalls[s.stream].append(s)
    out = []
    for tr in sorted(traces, key=lambda x: x.stream):
        if not _alive_at(tr, t):
            continue        # a stream that ended before the drop, or began after it
        toks = [tok for tok in receipts(tr) if lo <= tok[2] <= hi]
        before = [tok[2] - tok[1] for tok in toks if tok[1] is not None and tok[1] < after]
        base = float(np.median(before)) / MS if before else None
        line = [TimelineToken(i, None if e is None else (e - t) / MS, (r - t) / MS,
                              None if e is None else (r - e) / MS,
                              None if e is None or base is None else (r - e) / MS - base)
                for i, e, r in toks]
        later = [x.excess_ms for x in line if x.emit_ms is not None and x.excess_ms is not None
                 and x.emit_ms * MS >= after - t]
        hit = next((s for s in sorted(stalls[tr.stream], key=lambda s: s.end_ns)
                    if t < s.end_ns and s.start_ns < hi), None)
        own = sum(1 for d in analysis.drops if d.direction == "down" and d.payload > 0
                  and tr.stream in d.streams and lo <= d.t_ns <= hi)
        out.append(StreamTimeline(
            stream=tr.stream, connection=tr.connection, owner=tr.stream in drop.streams,
            own_drops=own, baseline_owd_ms=base, tokens=line,
            peak_excess_ms=max(later) if later else None, stalled=hit is not None,
            resumed_ms=None if hit is None else (hit.end_ns - t) / MS,
            stall_ms=None if hit is None else hit.duration_ns / MS))
    n = sum(1 for d in analysis.drops if d.payload > 0 and d.rule != "foreign-port")
    return DropTimeline(drop=drop, drops_in_point=n, streams=out)


# ------------------------------------------------------------ one call per point


def _mean_loss(d: DirectionSpec) -> float:
    return float(getattr(d.loss, "mean_loss", getattr(d.loss, "p", 0.0)))


def link_facts(link: LinkSpec | None) -> dict[str, Any]:
    """What the report needs to know about a point's link: RTT, nominal loss, which
    direction(s) lose packets, and whether it is a single-drop probe."""
    if link is None:
        return {"link": "", "rtt_ms": 0.0, "loss": 0.0, "loss_direction": "none",
                "single_drop": False}
    lossy = [name for name, d in (("down", link.down), ("up", link.up))
             if _mean_loss(d) > 0 or d.drops or d.blackholes]
    return {"link": link.name, "rtt_ms": link.rtt_ms,
            "loss": max(_mean_loss(link.down), _mean_loss(link.up)),
            "loss_direction": "both" if len(lossy) == 2 else lossy[0] if lossy else "none",
            "single_drop": bool(link.down.drops or link.up.drops)}


def hol_summary(traces: list[StreamTrace], packets: Iterable[PacketRecord] | None,
                itl_ms: float, link: LinkSpec | None, **params: Any) -> dict[str, Any]:
    """JSON-ready analysis of one point (one repeat): the link facts, the analysis and,
    on a drop-list link, the timeline around the drop. `params` override HolParams
    fields (e.g. stall_factor). hol_report.HolPoint.from_summary reads it back."""
    facts = link_facts(link)
    if not itl_ms > 0:
        return {**facts, "itl_ms": itl_ms, "skipped": "no token interval: not a stream workload"}
    analysis = analyse_point(traces, packets, HolParams(itl_ms=itl_ms, rtt_ms=facts["rtt_ms"],
                                                       **params))
    timeline = drop_timeline(traces, analysis) if facts["single_drop"] else None
    return {**facts, "itl_ms": itl_ms, "analysis": analysis.to_dict(),
            "timeline": None if timeline is None else timeline.to_dict()}
