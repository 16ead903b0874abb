"""Token emission holds its absolute schedule on the real clock: t0 + ttft + k*itl, no drift
(real kernel timers, so an integration test: it sleeps)."""

import asyncio
import gc
import os
import threading
import time

import pytest

from base.clock import now_ns, sleep_until_ns
from servers.core import GenerateParams
from servers.model import Model


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _reference_wakeups(t0: int, deadlines: list[int]) -> list[int]:
    """How late the kernel itself wakes a thread sleeping to the same deadlines."""
    late = []
    for d in deadlines:
        time.sleep(max(0.0, (d - now_ns()) / 1e9))
        late.append(now_ns() - d)
    return late


@pytest.fixture
def no_gc_pauses():
    """A full test session's heap makes a cyclic-GC pass take milliseconds, and one landing
    in the stream's 2 s shows up as the pytest process's pause, not the schedule's: the
    schedule is measured with the collector off (collected first), as a server's hot
    loop would see it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


ATTEMPTS = 3


class RunQueueWait:
    """How long this thread has been runnable but waiting for a CPU (the second field of
    /proc/<pid>/task/<tid>/schedstat, ns; 0 where the kernel has no such file): the part
    of a late wake-up that other work on the machine caused."""

    def __init__(self) -> None:
        path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        self.fd = os.open(path, os.O_RDONLY) if os.path.exists(path) else None

    def ns(self) -> int:
        return 0 if self.fd is None else int(os.pread(self.fd, 128, 0).split()[1])

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


async def _schedule_deviations() -> tuple[list[int], list[int], int]:
    """One 200-token stream: each emission's lateness against its slot, the part of it
    this thread spent waiting for a CPU, and the p99 lateness of a plain thread sleeping
    to the same moments (the machine's wake-up floor)."""
    params = GenerateParams("schedule", max_tokens=200, ttft_ms=20, itl_ms=10)
    t0 = now_ns()
    slots = [t0 + 20_000_000 + k * 10_000_000 for k in range(200)]
    # On a shared machine the OS may wake any sleeper late; measure that floor at the
    # same moments (offset half a slot) so the bound is on what our scheduling adds.
    reference = asyncio.get_running_loop().run_in_executor(
        None, _reference_wakeups, t0, [s + 5_000_000 for s in slots])
    queue = RunQueueWait()
    stamps, waits, before = [], [], queue.ns()
    try:
        async for ev in Model().stream(params, t0):
            after = queue.ns()      # between two emissions the loop sleeps: not runnable
            stamps.append(ev.emit_ns)
            waits.append(after - before)
            before = after
    finally:
        queue.close()
    floor = percentile(await reference, 0.99)
    return [s - slot for s, slot in zip(stamps, slots)], waits, floor


async def test_200_tokens_at_10ms_stay_within_1ms_at_p99(no_gc_pauses):
    # A p99 of 200 samples is the second-worst wake-up, so one burst from a neighbour on
    # a shared machine decides it; the bound must hold in one of a few attempts (a
    # scheduler that drifts or sleeps the wrong span fails all of them). Contention is
    # not the schedule's doing: with two busy processes on this 2-core machine the
    # loop's thread waited whole ~3 ms time slices for a CPU (the reference thread was
    # spared), so each emission counts its lateness less its thread's run-queue wait.
    misses = []
    for _ in range(ATTEMPTS):
        deviations, waits, floor = await _schedule_deviations()
        assert min(deviations) >= 0                     # never early
        own = [max(0, d - w) for d, w in zip(deviations, waits)]
        p99 = percentile(own, 0.99)
        # No drift: an absolute schedule keeps the last token as close to its slot as
        # the first ones, where sleep(itl) in a loop would be 200 wake-ups late by now.
        tail = sorted(own[-20:])[10]
        print(f"emit deviation p50 {percentile(deviations, 0.5) / 1e3:.0f} us, p99 "
              f"{percentile(deviations, 0.99) / 1e3:.0f} us, less run-queue wait p99 "
              f"{p99 / 1e3:.0f} us, last-20 median {tail / 1e3:.0f} us; kernel wake-up "
              f"p99 {floor / 1e3:.0f} us")
        if p99 < 1_000_000 + floor and tail < 1_000_000 + floor:
            return
        misses.append((p99, tail, floor))
    pytest.fail(f"p99 / last-20 median (less run-queue wait) / floor (ns) in {ATTEMPTS} "
                f"attempts: {misses}")


async def test_concurrent_sleepers_wake_in_deadline_order():
    t0 = now_ns() + 5_000_000
    order = []

    async def sleeper(k):
        await sleep_until_ns(t0 + (7 - k) * 1_000_000)
        order.append(k)

    await asyncio.gather(*(sleeper(k) for k in range(8)))
    assert order == list(range(7, -1, -1))


async def test_cancelled_sleeper_does_not_block_others():
    t0 = now_ns()
    early = asyncio.ensure_future(sleep_until_ns(t0 + 2_000_000))
    await asyncio.sleep(0)
    early.cancel()
    await sleep_until_ns(t0 + 4_000_000)
    assert now_ns() - (t0 + 4_000_000) < 5_000_000


async def test_abandoned_stream_counts_as_cancelled():
    model = Model()
    params = GenerateParams("x", max_tokens=100, itl_ms=5)
    gen = model.stream(params)
    await gen.__anext__()
    assert model.stats.active_streams == 1
    await gen.aclose()
    assert model.stats.active_streams == 0 and model.stats.cancelled_streams == 1
