"""The event loop each server kind runs on, checked by the property that made the choice.

aioquic paces and times its packets by the clock its caller hands it; hypercorn's QUIC
server hands it the event loop's. On a clock that ticks in whole milliseconds (uvloop's)
a pacer waiting a fraction of a millisecond spins until the tick (servers/__main__.py,
STDLIB_LOOP_KINDS). So the h3 server's loop clock must move in steps well under 1 ms.
"""

from __future__ import annotations

import asyncio

from servers.__main__ import loop_runner


async def _smallest_step_s(steps_wanted: int = 5, max_iterations: int = 200_000) -> float:
    """The smallest forward step of loop.time() between two loop iterations. Preemption
    can only lengthen steps, so the smallest one is the clock's own resolution."""
    loop = asyncio.get_running_loop()
    last, steps = loop.time(), []
    for _ in range(max_iterations):
        await asyncio.sleep(0)
        now = loop.time()
        if now > last:
            steps.append(now - last)
            if len(steps) >= steps_wanted:
                break
        last = now
    return min(steps) if steps else float("inf")


def test_h3_server_loop_clock_moves_in_steps_under_a_tenth_of_a_millisecond():
    assert loop_runner("h3")(_smallest_step_s()) < 1e-4


def test_a_millisecond_clock_is_told_apart():
    # The check above fails on uvloop (what the TCP kinds run on): it can fail.
    assert loop_runner("h1")(_smallest_step_s()) >= 0.9e-3
