"""The forwarding loop: packets in from one TUN fd, through the model, out of the other
at their release time; JSON-line commands on a control fd.

    up:   client TUN --read--> model.up   --at release--> server TUN
    down: server TUN --read--> model.down --at release--> client TUN

One thread, one select() loop. Release times are kept per direction in a FIFO (the
model keeps them non-decreasing unless reorder is on; then a heap). The loop sleeps in
select() until the earliest release or the next packet; with the timer slack set to
1 ns the wake-up is typically ~20 us late (p99 ~130 us), well under the 0.5 ms budget.
A packet that is due at once (no delay, no rate) is written straight away.

Throughput: reads are batched until EAGAIN, a batch limit (so one busy direction cannot
starve the other) or a queued packet falling due (releasing on time comes first); the
hot path binds everything to locals, and a packet costs no Python object beyond the
bytes read (the log keeps 51 bytes of it).

Timestamps are taken when the emulator reads a packet: the time it waited in the TUN
device's queue for the loop to wake (~50-150 us from idle on this VM) is outside the
model, and is the emulator's own added latency (benchmarks/link_emulator.py measures it).
"""

from __future__ import annotations

import ctypes
import heapq
import json
import os
import resource
import select
import time
from collections import deque
from typing import Any

from harness.scenario.linkspec import LinkSpec

from . import VERSION
from .log import HEADER, PacketLog, header_of
from .model import FWD, OUTCOMES, LinkModel
from .specdict import spec_from_dict, spec_to_dict
from .tun import device_tx

UP, DOWN = 0, 1
BATCH = 64                  # packets read from one fd before looking at the other
FAR = 1 << 62               # "nothing due"
READ_SIZE = 65535           # a TUN read returns one packet; never truncate one
# select() wakes 20-60 us after the timeout it was given on this VM (timer, wake-up from
# idle, more when the machine is busy). The loop learns that overshoot (a running mean)
# and asks to wake that much earlier, then polls (select with timeout 0) to the release:
# releases come ~10 us late instead of ~50, for a few us of polling per release, within
# a budget (below).
# SPIN_NS adds a fixed polling margin on top: it cut lateness a little more but cost
# +35% of a core at 50 Mbit/s with 5 ms delay, and under SCHED_FIFO a polling emulator
# starves the receiver sharing its core (TCP stalled in 1 of 3 runs). Off by default.
SPIN_NS = 0
MAX_EARLY_NS = 200_000      # never poll for longer than this
# Polling is worth it when packets are sparse (request/response, probes); when releases
# are due every few tens of us it would poll all the time, taking the core from the
# load. So at most POLL_BUDGET_NS of polling per POLL_WINDOW_NS, then plain sleeps.
POLL_WINDOW_NS = 100_000_000
POLL_BUDGET_NS = 5_000_000
_PR_SET_TIMERSLACK = 29


def _percentile_us(hist: list[int], q: float) -> float:
    """Upper bound (us) of the log2 bucket holding quantile q of the release lateness
    of packets that waited in the queue (those forwarded at once are not counted)."""
    total = sum(hist)
    if not total:
        return 0.0
    seen = 0
    for bits, n in enumerate(hist):
        seen += n
        if seen >= q * total:
            return (1 << bits) / 1e3
    return float("inf")


class Emulator:
    def __init__(self, client_fd: int, server_fd: int, ctl_in: int, ctl_out: int,
                 info: dict[str, Any] | None = None, spin_ns: int = SPIN_NS) -> None:
        self.spin_ns = spin_ns
        self.early_ns = 0                        # learnt select() overshoot (stats)
        self.in_fd = (client_fd, server_fd)      # up reads the client side
        self.out_fd = (server_fd, client_fd)     # ... and writes the server side
        self.ctl_in, self.ctl_out = ctl_in, ctl_out
        self.info = info or {}
        self.log = PacketLog()
        self.queues: list[Any] = [deque(), deque()]
        self.heap = [False, False]               # queue is a heap (reorder on)
        self.seq = 0                             # heap tie-break: arrival order
        self.ctl_buf = b""
        self.done = False
        # totals since start (the model's counts restart at every configure)
        self.rx = [[0, 0], [0, 0]]               # [packets, bytes] read per direction
        self.tx = [[0, 0], [0, 0]]               # [packets, bytes] written
        self.late = [[0, 0, 0], [0, 0, 0]]       # [sum ns, max ns, count > 0.5 ms]
        self.late_hist = [[0] * 64, [0] * 64]    # by lateness.bit_length(): log2 ns buckets
        self.write_errors = 0
        self.log_tx0: list[tuple[int, int]] | None = None
        self.configure(LinkSpec())

    # -- control ------------------------------------------------------------------

    def configure(self, spec: LinkSpec) -> None:
        """New link from now on: rule counters, blackhole clock and RNGs restart.
        Packets already in flight keep their release times."""
        self.spec = spec
        self.model = LinkModel(spec, time.monotonic_ns())
        self.dirs = (self.model.up, self.model.down)
        for d, dm in enumerate(self.dirs):
            if dm.reorder == self.heap[d]:
                continue
            if dm.reorder:                       # FIFO (release, pkt) -> heap (release, seq, pkt)
                self.queues[d] = [(rel, i, pkt) for i, (rel, pkt) in enumerate(self.queues[d])]
                self.seq = max(self.seq, len(self.queues[d]))
            else:                                # heap -> FIFO in release order
                self.queues[d] = deque((rel, pkt) for rel, _, pkt in sorted(self.queues[d]))
            self.heap[d] = dm.reorder

    def command(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd = msg.get("cmd")
        if cmd == "configure":
            self.configure(spec_from_dict(msg["spec"]))
            return {"ok": True, "spec": spec_to_dict(self.spec)}
        if cmd == "log_start":
            self.log_tx0 = self._senders_tx()
            self.log.start()
            return {"ok": True}
        if cmd == "log_stop":
            dropped = self.log.overflow
            tx1, tx0 = self._senders_tx(), self.log_tx0
            n = self.log.stop(msg["path"])
            reply: dict[str, Any] = {"ok": True, "records": n, "not_logged": dropped}
            if tx0 is not None and tx1 is not None:
                reply["device_tx"] = {name: [b1 - b0, p1 - p0] for name, (b1, p1), (b0, p0)
                                      in zip(("up", "down"), tx1, tx0)}
            return reply
        if cmd == "stats":
            out = {"ok": True, **self.stats()}
            if msg.get("reset"):                 # lateness per measurement, not per life
                self.late = [[0, 0, 0], [0, 0, 0]]
                self.late_hist = [[0] * 64, [0] * 64]
            return out
        if cmd == "ping":
            return {"ok": True, "t_ns": time.monotonic_ns()}
        if cmd == "quit":
            self.done = True
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _senders_tx(self) -> list[tuple[int, int]] | None:
        """(tx bytes, packets) of the client's and the server's device, read in the same
        step that starts or stops the log, so both count the same window (from the
        parent, a control round trip and the final connection closes fall between)."""
        where = self.info.get("counters")
        if not where:
            return None
        try:
            return [device_tx(path, dev) for path, dev in where]
        except OSError:
            return None

    def stats(self) -> dict[str, Any]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out: dict[str, Any] = {"cpu_s": ru.ru_utime + ru.ru_stime, "pid": os.getpid(),
                               "version": VERSION, "write_errors": self.write_errors,
                               "logging": self.log.on, "log_records": len(self.log),
                               "wake_early_us": self.early_ns / 1e3}
        for d, name in enumerate(("up", "down")):
            queued = sum(self.late_hist[d])      # packets released from the queue
            out[name] = {
                "rx_packets": self.rx[d][0], "rx_bytes": self.rx[d][1],
                "tx_packets": self.tx[d][0], "tx_bytes": self.tx[d][1],
                "since_configure": dict(zip(OUTCOMES, self.dirs[d].counts)),
                "in_flight": len(self.queues[d]),
                "released_from_queue": queued,
                "late_mean_us": self.late[d][0] / queued / 1e3 if queued else 0.0,
                "late_max_us": self.late[d][1] / 1e3,
                "late_over_500us": self.late[d][2],
                "late_p50_us": _percentile_us(self.late_hist[d], 0.50),
                "late_p99_us": _percentile_us(self.late_hist[d], 0.99)}
        return out

    def _control(self) -> None:
        try:
            chunk = os.read(self.ctl_in, 65536)
        except BlockingIOError:
            return
        if not chunk:                            # parent closed our stdin: we are done
            self.done = True
            return
        self.ctl_buf += chunk
        while b"\n" in self.ctl_buf:
            line, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                reply = self.command(json.loads(line))
            except Exception as exc:             # a bad command must not kill the link
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.reply(reply)

    def reply(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(self.ctl_out, data):]

    # -- forwarding ---------------------------------------------------------------

    def _drain(self, d: int, due: int) -> None:
        """Read what is waiting on direction d's input: up to BATCH packets, and stop
        once a queued packet is due (releasing on time comes before reading more)."""
        read, now_ns, write = os.read, time.monotonic_ns, os.write
        fd_in, fd_out = self.in_fd[d], self.out_fd[d]
        offer = self.dirs[d].offer
        q, heap = self.queues[d], self.heap[d]
        log = self.log
        room = log.limit - len(log.t) if log.on else 0
        if room:            # the log's appends, bound here: this loop is the hot path
            log_t, log_rel = log.t.append, log.release.append
            log_code, log_hdr = log.codes.append, log.headers.extend
        code = d << 4
        rx = self.rx[d]
        sent = bytes_sent = 0
        for _ in range(BATCH):
            try:
                pkt = read(fd_in, READ_SIZE)
            except BlockingIOError:
                break
            t = now_ns()
            size = len(pkt)
            rx[0] += 1
            rx[1] += size
            outcome, release = offer(t, size, pkt[9] if size > 9 else 0)
            if room:
                room -= 1
                log_t(t)
                log_rel(release)
                log_code(code | outcome)
                log_hdr(pkt[:HEADER] if pkt[0] == 0x45 and size >= HEADER else header_of(pkt))
            elif log.on:
                log.overflow += 1
            if outcome != FWD:
                continue
            if not q and release <= t:           # due now and nothing ahead of it
                try:
                    write(fd_out, pkt)
                    sent += 1
                    bytes_sent += size
                except OSError:
                    self.write_errors += 1
            elif heap:
                self.seq += 1
                heapq.heappush(q, (release, self.seq, pkt))
            else:
                q.append((release, pkt))
            if t >= due:
                break
        self.tx[d][0] += sent
        self.tx[d][1] += bytes_sent

    def _release(self, d: int, now: int) -> int | None:
        """Write direction d's packets that are due; ns until the next one (or None)."""
        q = self.queues[d]
        if not q:
            return None
        fd_out, late, hist, tx = self.out_fd[d], self.late[d], self.late_hist[d], self.tx[d]
        if self.heap[d]:
            while q and q[0][0] <= now:
                release, _, pkt = heapq.heappop(q)
                self._send(fd_out, pkt, now - release, tx, late, hist)
        else:
            pop = q.popleft
            while q and q[0][0] <= now:
                release, pkt = pop()
                self._send(fd_out, pkt, now - release, tx, late, hist)
        return q[0][0] - now if q else None

    def _send(self, fd: int, pkt: bytes, lateness: int, tx: list[int], late: list[int],
              hist: list[int]) -> None:
        try:
            os.write(fd, pkt)
        except OSError:
            self.write_errors += 1
            return
        tx[0] += 1
        tx[1] += len(pkt)
        late[0] += lateness
        hist[lateness.bit_length()] += 1
        if lateness > late[1]:
            late[1] = lateness
        if lateness > 500_000:
            late[2] += 1

    def run(self) -> None:
        ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)   # exact select() wake-ups
        for fd in (*self.in_fd, self.ctl_in):
            os.set_blocking(fd, False)
        up_fd, down_fd = self.in_fd
        rlist = [up_fd, down_fd, self.ctl_in]
        now_ns, sel, spin = time.monotonic_ns, select.select, self.spin_ns
        early = 0           # ns: running mean of how late select() wakes for a timeout
        window_end = polled = 0     # polling spent in the current POLL_WINDOW_NS
        self.reply({"ready": True, "pid": os.getpid(), "version": VERSION, **self.info})
        while not self.done:
            now = now_ns()
            wait_up = self._release(UP, now)
            wait_down = self._release(DOWN, now)
            timed = False
            if wait_up is None and wait_down is None:
                timeout, due = None, FAR
            else:
                wait = min(w for w in (wait_up, wait_down) if w is not None)
                due = now + wait
                # ask to wake as much earlier as select() usually oversleeps, then poll
                # the last stretch: releases are on time without spinning a fixed margin
                if now >= window_end:
                    window_end, polled = now + POLL_WINDOW_NS, 0
                margin = (early if polled < POLL_BUDGET_NS else 0) + spin
                if wait > margin:
                    timeout, timed = (wait - margin) / 1e9, True
                else:
                    timeout = 0.0
            ready = sel(rlist, [], [], timeout)[0]
            if timed and not ready:                  # a timer wake-up: how late was it?
                over = now_ns() - (due - margin)
                early += (min(max(over, 0), MAX_EARLY_NS) - early) >> 3
                self.early_ns = early
            elif timeout == 0.0 and not ready:
                polled += now_ns() - now
            for fd in ready:
                if fd == up_fd:
                    self._drain(UP, due)
                elif fd == down_fd:
                    self._drain(DOWN, due)
                else:
                    self._control()
