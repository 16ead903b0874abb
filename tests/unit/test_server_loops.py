"""The event loop each server kind runs on, checked by the property that made the choice.

aioquic paces and times its packets by the clock its caller hands it; hypercorn's QUIC
server hands it the event loop's. On a clock that ticks in whole milliseconds (uvloop's)
a pacer waiting a fraction of a millisecond spins until the tick (servers/__main__.py,
STDLIB_LOOP_KINDS). So the h3 server's loop must tell apart instants well under 1 ms.
"""

from __future__ import annotations

import asyncio
import time

from servers.__main__ import loop_runner


async def _distinct_loop_times(window_s: float = 0.005) -> int:
    """How many different loop.time() values a busy 5 ms on the loop sees."""
    loop = asyncio.get_running_loop()
    seen: set[float] = set()
    end = time.monotonic() + window_s
    while time.monotonic() < end:
        seen.add(loop.time())
        await asyncio.sleep(0)
    return len(seen)


def test_h3_server_loop_clock_resolves_below_a_millisecond():
    # A millisecond clock gives at most 6 values in 5 ms; a fine one thousands.
    assert loop_runner("h3")(_distinct_loop_times()) > 50


def test_a_millisecond_clock_is_told_apart():
    # The check above fails on uvloop (what the TCP kinds run on): it can fail.
    assert loop_runner("h1")(_distinct_loop_times()) <= 7
