"""The one-user closed loop (harness.run.load.blocking_loop) on a scripted client and an
explicit clock: the order of sends, reads and decodes, the late-read rule and errors,
exact and in memory (against real servers: tests/integration/test_blocking_path.py)."""

from __future__ import annotations

import numpy as np

from clients.base import ConnectionLost, UnaryResult
from harness.measure.recorder import Recorder
from harness.run.load.blocking_loop import LATE_LIMIT, BlockingLoop

MS = 1_000_000


class ScriptedClient:
    """send / receive / complete in two calls (the overlapped path); `waiting(k)` says
    whether request k's response is already there when the loop comes to read it."""

    can_overlap = True

    def __init__(self, waiting=lambda k: False, failing=()) -> None:
        self.log: list[tuple[str, int]] = []
        self.waiting, self.failing = waiting, set(failing)
        self.sent = 0

    def send(self, request):
        k = self.sent
        self.sent += 1
        self.log.append(("send", k))
        return (k * MS, k)

    def receive(self, sent):
        self.log.append(("receive", sent[1]))
        if sent[1] in self.failing:
            raise ConnectionLost(f"request {sent[1]} lost")
        return (sent[0], sent[1])

    def complete(self, got):
        self.log.append(("decode", got[1]))
        t = got[0] + MS
        return UnaryResult(np.zeros((1, 4), "<f4"), got[0], t, t, t, 10, 10, None)

    def response_waiting(self) -> bool:
        return self.waiting(self.sent - 1)


def run(client, requests, overlap=True, clock=lambda: 0, duration_s=None):
    rec, done = Recorder(), []
    loop = BlockingLoop(client, lambda: {}, rec, lambda: done.append(1), overlap, clock=clock)
    loop.run(requests, duration_s)
    return loop, rec, len(done)


def test_overlap_keeps_one_request_on_the_wire_and_decodes_behind_it():
    client = ScriptedClient()
    loop, rec, done = run(client, 4)
    assert client.log == [("send", 0), ("receive", 0),
                          ("send", 1), ("decode", 0), ("receive", 1),
                          ("send", 2), ("decode", 1), ("receive", 2),
                          ("send", 3), ("decode", 2), ("receive", 3),
                          ("decode", 3)]
    assert rec.n == done == 4 and loop.late_reads == 0 and loop.overlap


def test_systematic_late_reads_make_the_loop_go_sequential():
    client = ScriptedClient(waiting=lambda k: True)     # the server always beats the decode
    loop, rec, done = run(client, 10)
    assert loop.late_reads == LATE_LIMIT and rec.late_reads == LATE_LIMIT
    assert not loop.overlap
    # From then on each request leaves only after the last one was decoded.
    tail = client.log[-6:]
    assert tail == [("send", 8), ("receive", 8), ("decode", 8),
                    ("send", 9), ("receive", 9), ("decode", 9)]
    assert rec.n == done == 10


def test_rare_late_reads_keep_the_overlap():
    client = ScriptedClient(waiting=lambda k: k in (10, 50, 90))   # 3 in 100: noise
    loop, rec, _ = run(client, 100)
    assert loop.late_reads == 3 and loop.overlap and rec.n == 100


def test_a_failed_request_is_recorded_and_the_loop_goes_on():
    client = ScriptedClient(failing={1})
    loop, rec, done = run(client, 4)
    assert rec.n == 3 and dict(rec.errors) == {"connection_lost": 1} and done == 4
    assert ("decode", 1) not in client.log and ("decode", 3) in client.log


def test_a_duration_ends_on_the_clock():
    now = [0]

    def clock():
        now[0] += 10 * MS                    # every stamp moves time 10 ms on
        return now[0]

    client = ScriptedClient()
    _, rec, _ = run(client, None, clock=clock, duration_s=0.1)
    assert 0 < rec.n < 10 and client.sent == rec.n       # bounded by time, not count
