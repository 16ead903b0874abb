"""The sender's congestion state over time, per connection (by the client's port).

Three sources, one shape (a step function: a state holds until the next one):
- TCP: harness.netlab.tcp_sampler's CSV (tcp_samples.py: struct tcp_info every ~2 ms);
  the window is full when packets in flight >= cwnd.
- aioquic: servers.http.qlog's JSON lines (`recovery:metrics_updated` on every change,
  CLOCK_MONOTONIC ns).
- quic-go (Caddy): its own qlog (JSON-SEQ, `*.sqlog`): event times in ms after a
  reference wall-clock time, mapped to CLOCK_MONOTONIC with the host's wall-monotonic
  offset (one clock pair, read when the file is read).
For QUIC the window is full when it has less than one token frame of room
(FRAME_ROOM): aioquic starts a frame only if it fits; quic-go sends while bytes in
flight < cwnd (the same test, give or take a frame).
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from harness.measure.mechanism.tcp_samples import read_csv as read_tcp_samples

FRAME_ROOM = 200            # bytes: a token's STREAM frame and its packet overhead
STALE_NS = 50_000_000       # a state older than this (no sample since) is unknown


@dataclass
class SenderState:
    """One connection's window-full steps: full[i] holds from t_ns[i] to t_ns[i + 1]."""
    stack: str
    t_ns: list[int] = field(default_factory=list)
    full: list[bool] = field(default_factory=list)
    sampled: bool = True        # TCP: samples (stale after STALE_NS); QUIC: every change
    queued: list[int] = field(default_factory=list)   # TCP: bytes written, not yet sent

    def add(self, t_ns: int, full: bool, queued: int | None = None) -> None:
        self.t_ns.append(t_ns)
        self.full.append(full)
        if queued is not None:
            self.queued.append(queued)

    def queued_after(self, t_ns: int) -> tuple[int, int] | None:
        """(sample time, bytes queued) of the first sample at or after t_ns, if one
        came within STALE_NS (TCP only)."""
        i = bisect_left(self.t_ns, t_ns)
        if not self.queued or i == len(self.t_ns) or self.t_ns[i] - t_ns > STALE_NS:
            return None
        return self.t_ns[i], self.queued[i]

    def full_ns(self, lo: int, hi: int) -> tuple[int, int]:
        """(ns of [lo, hi) with the window full, ns of it the state is known)."""
        if hi <= lo or not self.t_ns:
            return 0, 0
        i = max(bisect_right(self.t_ns, lo) - 1, 0)
        full = known = 0
        while i < len(self.t_ns) and self.t_ns[i] < hi:
            start = max(self.t_ns[i], lo)
            end = min(self.t_ns[i + 1] if i + 1 < len(self.t_ns) else hi, hi)
            if self.sampled:
                end = min(end, self.t_ns[i] + STALE_NS)
            if end > start:
                known += end - start
                full += (end - start) if self.full[i] else 0
            i += 1
        return full, known


States = dict[int, SenderState]     # client port -> state


def tcp_states(path: Path | str) -> States:
    out: States = defaultdict(lambda: SenderState("tcp"))
    for s in read_tcp_samples(str(path)):
        out[s.client_port].add(s.t_ns, s.window_full, s.notsent_bytes)
    return dict(out)


def qlog_states(directory: Path | str, since_ns: int | None = None) -> States:
    """Every connection in a QLOGDIR (both stacks' files), or only those with events at or
    after since_ns (this host's monotonic clock; None keeps all: a quic-go trace written
    before this host booted maps to negative times)."""
    out: States = {}
    found = [_aioquic(p) for p in sorted(Path(directory).glob("*.qlog.jsonl"))]
    found += [_quic_go(p) for p in sorted(Path(directory).glob("*.sqlog"))]
    for port, state in found:
        if port is not None and state.t_ns and (since_ns is None or state.t_ns[-1] >= since_ns):
            out[port] = state
    return out


def _aioquic(path: Path) -> tuple[int | None, SenderState]:
    state, port = SenderState("aioquic", sampled=False), None
    with open(path) as fh:
        for line in fh:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:     # a line still being written
                continue
            name = ev.get("name")
            if name == "transport:connection_started":
                port = ev["data"]["remote"]["port"]
            elif name == "recovery:metrics_updated":
                d = ev["data"]
                state.add(ev["t_ns"], d["cwnd"] - d["bytes_in_flight"] < FRAME_ROOM)
    return port, state


def _quic_go(path: Path) -> tuple[int | None, SenderState]:
    state, port, ref_ns = SenderState("quic-go", sampled=False), None, None
    cwnd = inflight = None
    offset = time.time_ns() - time.monotonic_ns()        # wall - monotonic, this host
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            line = raw.strip().lstrip("\x1e")
            if not line:
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            if ref_ns is None and "trace" in ev:
                wall = ev["trace"]["common_fields"]["reference_time"]["wall_clock_time"]
                ref_ns = _wall_ns(wall) - offset
                continue
            name = ev.get("name")
            if ref_ns is None or name is None:
                continue
            t_ns = ref_ns + round(float(ev["time"]) * 1e6)
            if name == "transport:connection_started":
                remote = ev["data"]["remote"]
                port = remote.get("port_v4") or remote.get("port_v6")
            elif name == "recovery:metrics_updated":
                d = ev["data"]
                cwnd = d.get("congestion_window", cwnd)
                inflight = d.get("bytes_in_flight", inflight)
                if cwnd is not None and inflight is not None:
                    state.add(t_ns, cwnd - inflight < FRAME_ROOM)
    return port, state


def _wall_ns(text: str) -> int:
    """RFC 3339 with up to 9 fractional digits (quic-go writes ns) -> Unix ns."""
    head, _, frac = text.rstrip("Z").partition(".")
    secs = datetime.fromisoformat(head + "+00:00").timestamp()
    return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
