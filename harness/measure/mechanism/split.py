"""What each collateral stall waited on: ordering, the congestion window, or the
application, measured from the token stamps, the link's packet log and the sender's
congestion state.

A token's life has four measured legs: emitted by the server app (emit stamp e), first
on the link (w: the packet that carried it), released by the link (r; for a dropped
packet, its repair's), read by the client app (v). The carrying packet: on TCP the first
new-data packet reaching the token's last byte, placed by the sampled send queue (bytes
sent + bytes queued just after e, less the tokens written since); on QUIC, or with no
sample, the first new-data packet after e; on QUIC (packets are encrypted, and which
frames a congested sender packs is its own choice) the last data packet released
before v: a QUIC stream is readable as soon as its bytes arrive, so this packet bounds
r -> v from below (a busy client would show as sender time). A packet released after v
cannot have carried it: the one before is taken. Each leg is one mechanism:

    e -> w  the sender held it: congestion window when the sender's state says the
            window was full (the share of [e, w) it was), else the application (the
            server's event loop, its pacing or its send path)
    w -> r  the link (propagation and queueing; the same for every token when the
            link has no rate limit)
    r -> v  the receiver held it: ordering while a lower TCP sequence range that the
            link dropped was not yet repaired (a retransmission covering it released),
            else the client application. QUIC delivers each stream in its own order,
            so a stream that lost nothing is never held by ordering there.

A stall of duration D ended by token k, whose predecessor on the stream (in receipt
order) is token p, splits exactly, leg by leg, as

    D = (e_k - e_p - interval)                      server app: the token came late
      + sum over legs of (leg_k - leg_p)            each leg's extra time

so the parts add up to D whenever both tokens' packets are found; a stall where they
are not is `unaccounted`. Parts can be negative (p itself waited longer on that leg).
Limits: the token's byte offset is estimated (tokens written between e and the sample
are counted at the connection's mean bytes per token); the QUIC carrier is the receiver's
bound above; the state is sampled (TCP: every ~2 ms), so a window that filled
between samples is missed.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import asdict, dataclass

from harness.measure.hol import Stall, receipts
from harness.measure.hol_drops import StreamTrace
from harness.measure.mechanism.sender import SenderState, States
from harness.measure.packetlog import PacketRecord

MECHANISMS = ("ordering", "cwnd", "app_server", "app_client", "link")
LABELS = {"ordering": "ordering (held behind a gap)",
          "cwnd": "congestion window (sender had data, no window)",
          "app_server": "application, server (emitted late, or sent late with window)",
          "app_client": "application, client (arrived, read late)",
          "link": "link (propagation and queueing)"}
QUIC_MIN_PAYLOAD = 60        # UDP payload: smaller QUIC packets are ACKs, not tokens
MOD = 1 << 32


@dataclass
class Legs:
    emit: int
    send: float          # e -> w
    cwnd: float          # of send: window full
    link: float          # w -> r
    ordering: float      # of r -> v: behind an unrepaired gap
    client: float        # the rest of r -> v


@dataclass
class MechanismSplit:
    source: str | None            # where the sender state came from
    collateral_stalls: int
    collateral_ms: float
    unaccounted_ms: float         # stalls whose tokens' packets were not found
    state_unknown_ms: float       # send time with no sender state (counted as app_server)
    ordering_ms: float = 0.0
    cwnd_ms: float = 0.0
    app_server_ms: float = 0.0
    app_client_ms: float = 0.0
    link_ms: float = 0.0

    @property
    def accounted_share(self) -> float | None:
        """Share of collateral stall time split into ordering, window or application."""
        if not self.collateral_ms:
            return None
        named = self.ordering_ms + self.cwnd_ms + self.app_server_ms + self.app_client_ms
        return named / self.collateral_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "accounted_share": self.accounted_share}


class _Connection:
    """One client port's downstream data packets: where a token's bytes went out, and
    (TCP) when each packet's bytes became readable."""

    def __init__(self, packets: list[PacketRecord], tcp: bool, emits: list[int]) -> None:
        self.tcp, self.emits = tcp, emits
        data = [p for p in packets if p.direction == "down" and
                (p.payload > 0 if tcp else p.payload >= QUIC_MIN_PAYLOAD)]
        data.sort(key=lambda p: p.t_ns)
        self.data = data
        base = data[0].seq if data else 0
        self.offs = [((p.seq - base) % MOD) for p in data] if tcp else [0] * len(data)
        # First sends: for TCP the packets that carried new bytes (ends increase).
        self.new: list[int] = []
        top = -1
        for i, p in enumerate(data):
            if not tcp or self.offs[i] + p.payload > top:
                self.new.append(i)
                top = max(top, self.offs[i] + p.payload)
        self.new_t = [data[i].t_ns for i in self.new]
        self.new_end = [self.offs[i] + data[i].payload for i in self.new]
        self.repair: dict[int, int] = {}         # dropped index -> forwarded repair index
        self.gaps: list[tuple[int, int, int]] = []   # (offset, dropped at, repair released)
        if tcp:
            self._repairs()
        span = [e for e in emits if self.new_t and self.new_t[0] <= e <= self.new_t[-1]]
        self.token_bytes = ((self.new_end[-1] - self.new_end[0]) / len(span)
                            if len(span) > 1 else 0.0)

    def _repairs(self) -> None:
        """Each drop's repair: the first later forwarded packet covering its first byte."""
        data, offs = self.data, self.offs
        for i, p in enumerate(data):
            if p.dropped:
                fix = next((j for j in range(i + 1, len(data)) if not data[j].dropped
                            and offs[j] <= offs[i] < offs[j] + data[j].payload), None)
                if fix is not None:
                    self.repair[i] = fix
                self.gaps.append((offs[i], p.t_ns, data[fix].release_ns if fix is not None
                                  else 1 << 62))

    def readable(self, i: int) -> int:
        """When forwarded packet i's bytes could be read: its release, or the release of
        the last repair of a lower range dropped before it was sent (TCP ordering)."""
        p = self.data[i]
        return max([p.release_ns] + [fixed for start, at, fixed in self.gaps
                                     if start < self.offs[i] and at < p.t_ns])

    def _quic_carrier(self, first: int, recv: int) -> int | None:
        """The last forwarded packet sent after the emit and released before the read:
        a QUIC stream's bytes are readable once their packet arrives, whatever other
        streams lost, so the read follows the carrier's release."""
        best = None
        for k in range(first, len(self.new)):
            p = self.data[self.new[k]]
            if p.t_ns > recv:
                break
            if not p.dropped and p.release_ns <= recv:
                best = k
        return best

    def _carrier(self, emit: int, recv: int, state: SenderState | None) -> int | None:
        """Index (into self.new) of the packet that carried the token's last byte.

        TCP with a sampled send queue: bytes written by the first sample after the emit
        (bytes sent by then + bytes queued), less the tokens written between the emit
        and that sample, is where the token ends; the first new packet reaching that far
        carried it. With no sample, the first new packet after the emit. QUIC: see
        _quic_carrier."""
        first = bisect_left(self.new_t, emit)
        if not self.tcp:
            return self._quic_carrier(first, recv)
        q = state.queued_after(emit) if state is not None else None
        if q is None:
            return first if first < len(self.new) else None
        t_s, queued = q
        j = bisect_right(self.new_t, t_s) - 1
        written = (self.new_end[j] if j >= 0 else 0) + queued
        later = bisect_right(self.emits, t_s) - bisect_right(self.emits, emit)
        k = max(bisect_left(self.new_end, written - later * self.token_bytes), first)
        return k if k < len(self.new) else None

    def legs(self, emit: int | None, recv: int, state: SenderState | None) -> Legs | None:
        if emit is None:
            return None
        k = self._carrier(emit, recv, state)
        while k is not None and k >= 0:
            i = self.new[k]
            i = self.repair.get(i, i) if self.data[i].dropped else i
            if not self.data[i].dropped and self.data[i].release_ns <= recv:
                break
            k -= 1                       # read before it arrived: an earlier packet had it
        else:
            return None
        if k < bisect_left(self.new_t, emit):
            return None                  # no packet after the emit fits
        p = self.data[i]
        w, r = p.t_ns, p.release_ns
        full, known = state.full_ns(emit, w) if state is not None else (0, 0)
        send = w - emit
        cwnd = send * full / known if known else 0.0
        held = min(self.readable(i), recv) if self.tcp else r
        return Legs(emit, send, cwnd, r - w, max(held - r, 0), recv - max(held, r))


def split_collateral(traces: list[StreamTrace], stalls: list[Stall],
                     packets: list[PacketRecord] | None, states: States | None,
                     source: str | None, interval_ns: int, tcp: bool) -> MechanismSplit:
    """The mechanism split of a point's collateral stalls (module docstring)."""
    collateral = [s for s in stalls if s.kind == "collateral"]
    total = sum(s.duration_ns for s in collateral) / 1e6
    out = MechanismSplit(source, len(collateral), total, 0.0, 0.0)
    if not collateral:
        return out
    by_port: dict[int, list[PacketRecord]] = defaultdict(list)
    for p in packets or ():
        by_port[p.client_port].append(p)
    conns: dict[int, _Connection] = {}
    streams = {t.stream: t for t in traces}
    parts = dict.fromkeys(MECHANISMS, 0.0)
    for s in collateral:
        trace = streams.get(s.stream)
        port = trace.client_port if trace else None
        if port is None or port not in by_port:
            out.unaccounted_ms += s.duration_ns / 1e6
            continue
        if port not in conns:
            emits = sorted(tok[1] for t in traces if t.client_port == port
                           for tok in t.tokens if tok[1] is not None)
            conns[port] = _Connection(by_port[port], tcp, emits)
        conn = conns[port]
        toks = receipts(trace)
        at = next((i for i, t in enumerate(toks) if t[0] == s.token and t[2] == s.end_ns), None)
        if not at:                       # not found, or the first token: no predecessor
            out.unaccounted_ms += s.duration_ns / 1e6
            continue
        prev, cur = toks[at - 1], toks[at]
        state = (states or {}).get(port)
        a = conn.legs(prev[1], prev[2], state)
        b = conn.legs(cur[1], cur[2], state)
        if a is None or b is None:
            out.unaccounted_ms += s.duration_ns / 1e6
            continue
        parts["app_server"] += (b.emit - a.emit - interval_ns) + \
            (b.send - b.cwnd) - (a.send - a.cwnd)
        parts["cwnd"] += b.cwnd - a.cwnd
        parts["link"] += b.link - a.link
        parts["ordering"] += b.ordering - a.ordering
        parts["app_client"] += b.client - a.client
        if states is None or port not in states:
            out.state_unknown_ms += (b.send - a.send) / 1e6
    for name, ns in parts.items():
        setattr(out, f"{name}_ms", ns / 1e6)
    return out
