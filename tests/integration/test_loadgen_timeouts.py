"""LoadRunner's per-request timeout on the real event loop: one watchdog timer for every
request in flight, with asyncio.timeout's semantics (a request past timeout_s is cancelled and counted as a
"timeout" error; any other cancellation still cancels)."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from clients.base import Client, ConnectionLost, Target, UnaryResult, clock_ns
from harness.run.job import LoadJob
from harness.scenario.model import Workload
from harness.run.load.loadgen import LoadRunner

WORKLOAD = {"type": "embed", "batch_size": 1, "dimensions": 8, "input_words": 4,
            "distinct_inputs": 1, "encoding": "float", "compute_ms": 0,
            "server_cache": False}


class FakeClient(Client):
    """Answers after the next delay (seconds) of its list."""

    protocol = "rest-h1"
    streaming = False

    def __init__(self, delays, swallow: bool = False) -> None:
        self.delays = iter(delays)
        self.swallow = swallow

    async def embed(self, request):
        t0 = clock_ns()
        try:
            await asyncio.sleep(next(self.delays))
        except asyncio.CancelledError:
            if self.swallow:            # a client that turns cancellation into its own error
                raise ConnectionLost("gave up") from None
            raise
        t = clock_ns()
        return UnaryResult(np.zeros((1, 8), "<f4"), t0, t, t, t, 10, 10, None)

    async def close(self) -> None:
        pass


def runner(client: Client, timeout_s: float, **kw) -> LoadRunner:
    job = LoadJob(protocol="rest-h1", target=Target(port=9),
                  workload=Workload.from_dict(WORKLOAD), mode=kw.pop("mode", "closed"), timeout_s=timeout_s,
                  warmup=0, keep_rows=True, **kw)
    r = LoadRunner(job)
    r.clients = [client]
    return r


async def test_slow_request_times_out_at_its_deadline():
    r = runner(FakeClient([0.001, 0.3, 0.001, 0.001]), timeout_s=0.05, requests=4)
    result = await r.measure()
    rec = r.rec
    assert rec.n == 3 and dict(rec.errors) == {"timeout": 1}
    assert "no complete response within 0.05 s" in rec.error_samples["timeout"]
    (row,) = [row for row in rec.rows if row[-1] == "timeout"]
    waited = (row[2] - row[1]) / 1e9
    assert 0.05 <= waited < 0.05 + 0.1          # at the deadline, not at the reply (0.3 s)
    assert result.wall_s < 0.3
    assert not r._watchdog.deadlines


async def test_deadlines_after_many_quick_requests():
    # Quick requests for longer than the timeout, then a slow one: the watchdog re-arms
    # for the requests in flight as the earlier deadlines pass unexpired.
    delays = itertools.chain([0.005] * 30, [0.5], [0.001])
    r = runner(FakeClient(delays), timeout_s=0.04, requests=32)
    await r.measure()
    assert r.rec.n == 31 and dict(r.rec.errors) == {"timeout": 1}


async def test_concurrent_users_time_out_independently():
    delays = [0.3, 0.001, 0.001, 0.3, 0.001, 0.001]
    r = runner(FakeClient(delays), timeout_s=0.05, requests=6, concurrency=3)
    await r.measure()
    assert r.rec.n == 4 and dict(r.rec.errors) == {"timeout": 2}


async def test_open_loop_requests_time_out():
    r = runner(FakeClient([0.001, 0.3, 0.001]), timeout_s=0.05, requests=3, mode="open",
               rate=100.0, arrival="constant")
    await r.measure()
    assert r.rec.n == 2 and dict(r.rec.errors) == {"timeout": 1}


async def test_a_client_that_converts_the_cancellation_keeps_its_error():
    r = runner(FakeClient([0.3, 0.001], swallow=True), timeout_s=0.05, requests=2)
    await r.measure()
    # Its own error is what it raised; the task is not left half-cancelled: the next
    # request ran and completed.
    assert dict(r.rec.errors) == {"connection_lost": 1} and r.rec.n == 1
    assert not r._watchdog.deadlines


async def test_outside_cancellation_is_not_a_timeout():
    r = runner(FakeClient([10.0]), timeout_s=5.0, requests=1)
    task = asyncio.ensure_future(r.measure())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not r.rec.errors and r.rec.n == 0


async def test_cancelled_by_the_watchdog_and_from_outside_is_cancelled():
    r = runner(FakeClient([10.0]), timeout_s=5.0, requests=1)
    task = asyncio.ensure_future(r._one(r.clients[0], r.rec, None))
    await asyncio.sleep(0)                          # now waiting inside the client
    r._watchdog.deadlines[task] = clock_ns() - 1    # its deadline has passed
    r._watchdog._fire()                             # the watchdog cancels it ...
    task.cancel()                                   # ... and so does someone else
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not r.rec.errors and not r._watchdog.deadlines
