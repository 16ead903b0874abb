"""The load generator's per-request timeout watchdog on an explicit clock and timer:
one timer for every request in flight, fired just after the earliest deadline, tasks
past theirs cancelled, re-armed for the rest. Exact, no event loop, no sleep (the same
watchdog inside a real LoadRunner: tests/integration/test_loadgen_timeouts.py)."""

from __future__ import annotations

from harness.run.load.loadgen import _Watchdog

MS = 1_000_000


class Task:
    def __init__(self, name: str) -> None:
        self.name, self.cancelled = name, False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """call_later that remembers what it was asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[float, object]] = []

    def __call__(self, delay_s: float, callback) -> str:
        self.asked.append((delay_s, callback))
        return f"timer{len(self.asked)}"


def watchdog(timeout_ms: float = 50):
    now = [1_000 * MS]
    timers = Timers()
    dog = _Watchdog(timeout_ms / 1000, clock=lambda: now[0], call_later=timers)
    return dog, now, timers


def start(dog, now, task, at_ms: float) -> None:
    """What LoadRunner does when a request starts (harness.run.load.loadgen._one)."""
    now[0] = 1_000 * MS + int(at_ms * MS)
    dog.deadlines[task] = now[0] + dog.timeout_ns
    if dog.timer is None:
        dog.arm(now[0])


def test_one_timer_sleeps_until_just_after_the_earliest_deadline():
    dog, now, timers = watchdog(50)
    a, b = Task("a"), Task("b")
    start(dog, now, a, 0)
    start(dog, now, b, 10)                   # a second request: no second timer
    assert len(timers.asked) == 1
    delay, fire = timers.asked[0]
    assert delay == (50 * MS + _Watchdog.SLACK_NS) / 1e9   # 50 ms + 1 ms slack
    now[0] = 1_000 * MS + 51 * MS            # the timer fires: a is late, b is not
    fire()
    assert a.cancelled and not b.cancelled and dog.deadlines[a] is None
    delay, _ = timers.asked[1]               # re-armed for b: 60 ms + slack - 51 ms
    assert delay == (9 * MS + _Watchdog.SLACK_NS) / 1e9


def test_requests_that_finished_are_not_cancelled_and_nothing_is_left_armed():
    dog, now, timers = watchdog(50)
    a = Task("a")
    start(dog, now, a, 0)
    del dog.deadlines[a]                     # answered in time: LoadRunner forgets it
    now[0] += 51 * MS
    timers.asked[0][1]()
    assert not a.cancelled and dog.timer is None and len(timers.asked) == 1


def test_every_request_past_its_deadline_is_cancelled_in_one_firing():
    dog, now, timers = watchdog(20)
    tasks = [Task(str(i)) for i in range(5)]
    for i, t in enumerate(tasks):
        start(dog, now, t, i)                # deadlines 20..24 ms
    now[0] = 1_000 * MS + 23 * MS            # fired late (a busy loop): 20..23 are past
    timers.asked[0][1]()
    assert [t.cancelled for t in tasks] == [True, True, True, True, False]
    assert timers.asked[-1][0] == (1 * MS + _Watchdog.SLACK_NS) / 1e9
