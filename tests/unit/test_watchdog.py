"""The runner's deadlines for a worker: its silence limit and its phases' plan deadlines."""

import pytest

from clients.base import Target
from harness.run.job import LoadJob
from harness.scenario.model import Workload
from harness.run.watchdog import (SLACK_FRACTION, SLACK_S, STARTUP_S, phase_deadline_s,
                              silence_limit_s)


def job(**kw) -> LoadJob:
    return LoadJob(protocol="rest-h1", target=Target(), workload=Workload.from_dict({"type": "embed"}), **{"mode": "closed", **kw})


def stretched(work_s: float) -> float:
    return work_s * (1 + SLACK_FRACTION) + SLACK_S


def test_silence_limit_allows_one_request_timeout():
    assert silence_limit_s(2.0) > 2.0


@pytest.mark.parametrize("kw, work_s", [
    # every request of a closed loop times out, its users sending theirs one after another
    ({"requests": 20, "concurrency": 4, "timeout_s": 1.0}, 5 * 1.0),
    ({"requests": 21, "concurrency": 4, "timeout_s": 1.0}, 6 * 1.0),      # a 6th round
    ({"requests": 3, "concurrency": 1, "timeout_s": 30.0}, 3 * 30.0),
    # a duration, then the last requests in flight
    ({"duration_s": 4.0, "concurrency": 8, "timeout_s": 1.0}, 4.0 + 1.0),
    # users start stagger_ms apart
    ({"requests": 4, "concurrency": 4, "timeout_s": 1.0, "stagger_ms": 500.0}, 1.0 + 2.0),
    # open loop: the arrivals' schedule, then the in-flight cap's queue of timeouts
    ({"mode": "open", "requests": 100, "rate": 50.0, "timeout_s": 1.0}, 2.0 + 1.0),
    ({"mode": "open", "requests": 100, "rate": 50.0, "timeout_s": 1.0, "max_in_flight": 10},
     2.0 + 10 * 1.0),
    ({"mode": "open", "duration_s": 3.0, "rate": 50.0, "timeout_s": 2.0}, 3.0 + 2.0),
])
def test_measure_deadline_is_the_plan_with_every_request_timing_out(kw, work_s):
    assert phase_deadline_s(job(**kw), "result") == pytest.approx(stretched(work_s))


@pytest.mark.parametrize("kw, rounds", [
    ({"warmup": 10, "concurrency": 2, "timeout_s": 2.0}, 5),
    ({"warmup": 10, "concurrency": 1, "connections": 5, "timeout_s": 2.0}, 2),
    ({"warmup": 3, "concurrency": 64, "timeout_s": 2.0}, 1),     # every user warms its connection
    ({"warmup": 0, "concurrency": 4, "timeout_s": 2.0}, 0),
])
def test_warm_deadline_is_startup_and_the_warmup_requests(kw, rounds):
    expected = STARTUP_S + stretched(rounds * 2.0)
    assert phase_deadline_s(job(requests=10, **kw), "warm") == pytest.approx(expected)


def test_unknown_phase_is_refused():
    with pytest.raises(ValueError, match="'warm' or 'result'"):
        phase_deadline_s(job(requests=1), "go")
