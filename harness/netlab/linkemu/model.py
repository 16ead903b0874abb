"""What the emulated link does to one packet: pure, no I/O, deterministic from the seed.

One `DirectionModel` per direction. For each packet arriving at time t it answers the
outcome (forwarded or why dropped) and, if forwarded, the time it leaves the far end:

    blackhole window? -> drop-list rule? -> loss model? -> drop-tail queue full?
    release = serialization end (rate limiter, FIFO) + delay + jitter
    without reorder: release = max(release, previous release)  (jitter never reorders)

Every packet advances every counter and draws from every random stream, whatever its
outcome, and each purpose (loss, jitter) has its own stream per direction: so changing
the jitter never changes which packets are lost, adding a drop rule never shifts the
Bernoulli losses, and the up direction never changes what happens down.
"""

from __future__ import annotations

import random
from collections import deque

from harness.scenario.linkspec import Bernoulli, DirectionSpec, GilbertElliott, LinkSpec

# Outcome codes, in the packet log's vocabulary (harness.measure.packetlog.Outcome).
FWD, LOSS, DROPLIST, BLACKHOLE, QUEUE = range(5)
OUTCOMES = ("fwd", "loss", "droplist", "blackhole", "queue")
PROTOCOLS = {"tcp": 6, "udp": 17}          # DropRule.proto -> IP protocol number
MS = 1_000_000


def rng(seed: int, direction: str, purpose: str) -> random.Random:
    """One independent stream per (seed, direction, purpose). String seeds hash with
    SHA-512 in CPython, stable across runs and machines."""
    return random.Random(f"wirebench-link/{seed}/{direction}/{purpose}")


class DirectionModel:
    """The link in one direction, from the moment it was configured (t0_ns)."""

    def __init__(self, spec: DirectionSpec, seed: int, direction: str, t0_ns: int) -> None:
        self.spec = spec
        self.t0 = t0_ns
        self.delay_ns = round(spec.delay_ms * MS)
        self.jitter_ns = spec.jitter_ms * MS
        self.reorder = spec.reorder
        # ns of serialization per byte; 0: unlimited rate, so no queue ever builds.
        self.ns_per_byte = 8000.0 / spec.rate_mbit if spec.rate_mbit else 0.0
        self.queue_limit = spec.queue_packets
        self.blackholes = [(round(b.start_ms * MS), round((b.start_ms + b.duration_ms) * MS))
                           for b in spec.blackholes]
        # [min_size, max_size, ip proto or 0 for any, frozenset(nth), count so far]
        self.rules = [[r.min_size, r.max_size, PROTOCOLS.get(r.proto, 0), frozenset(r.nth), 0]
                      for r in spec.drops]
        loss = spec.loss
        self.loss_rng = rng(seed, direction, "loss")
        self.jitter_rng = rng(seed, direction, "jitter")
        self.bernoulli = loss.p if isinstance(loss, Bernoulli) else 0.0
        self.ge = loss if isinstance(loss, GilbertElliott) else None
        self.ge_bad = False                  # Gilbert-Elliott starts in the good state
        self.busy_until = 0                  # end of the serialization in progress
        self.waiting: deque[int] = deque()   # start times of packets not yet serializing
        self.last_release = 0
        self.counts = [0] * len(OUTCOMES)

    def offer(self, t_ns: int, size: int, proto: int) -> tuple[int, int]:
        """(outcome code, release time in ns; 0 when dropped) for a packet of `size`
        IP bytes and IP protocol number `proto` arriving at `t_ns`."""
        outcome = FWD
        if self.blackholes:
            since = t_ns - self.t0
            for start, end in self.blackholes:
                if start <= since < end:
                    outcome = BLACKHOLE
                    break
        for rule in self.rules:              # every matching packet counts, dropped or not
            if rule[0] <= size <= rule[1] and (not rule[2] or rule[2] == proto):
                rule[4] += 1
                if rule[4] in rule[3] and outcome == FWD:
                    outcome = DROPLIST
        if self._lost() and outcome == FWD:
            outcome = LOSS
        jitter = self.jitter_rng.random() * self.jitter_ns if self.jitter_ns else 0.0
        if outcome != FWD:
            self.counts[outcome] += 1
            return outcome, 0
        start = t_ns
        if self.ns_per_byte:
            waiting = self.waiting
            while waiting and waiting[0] <= t_ns:    # these have started serializing
                waiting.popleft()
            if len(waiting) >= self.queue_limit:
                self.counts[QUEUE] += 1
                return QUEUE, 0
            if self.busy_until > t_ns:
                start = self.busy_until
                waiting.append(start)
            self.busy_until = start + round(size * self.ns_per_byte)
            start = self.busy_until          # the last bit leaves the sender here
        release = start + self.delay_ns + round(jitter)
        if not self.reorder and release < self.last_release:
            release = self.last_release
        self.last_release = release
        self.counts[FWD] += 1
        return FWD, release

    def _lost(self) -> bool:
        if self.ge is not None:
            ge, draw = self.ge, self.loss_rng.random
            lost = draw() < (ge.loss_bad if self.ge_bad else ge.loss_good)
            # decide this packet in the current state, then move (two draws, always)
            if draw() < (ge.r if self.ge_bad else ge.p):
                self.ge_bad = not self.ge_bad
            return lost
        if self.bernoulli:
            return self.loss_rng.random() < self.bernoulli
        return False

    @property
    def queued(self) -> int:
        """Packets waiting for the serializer as of the last arrival."""
        return len(self.waiting)


class LinkModel:
    """Both directions of one configured link."""

    def __init__(self, spec: LinkSpec, t0_ns: int) -> None:
        self.spec = spec
        self.t0 = t0_ns
        self.up = DirectionModel(spec.up, spec.seed, "up", t0_ns)
        self.down = DirectionModel(spec.down, spec.seed, "down", t0_ns)
