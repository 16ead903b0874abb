"""How long the runner waits on a silent worker, and what a failed point is.

A worker reports progress every 0.2 s while requests complete and a heartbeat at least
every HEARTBEAT_S seconds otherwise (harness.run.worker), from its event loop. A worker
silent for longer than `silence_limit_s` is frozen (SIGSTOP, a deadlock, a loop stuck
in a C call): the runner kills it and fails the point. The limit allows one request
timeout on top (a blocking one-user loop may sit in one request that long) and a slack
for a busy machine.

A worker whose loop still beats but whose phase never ends (a client that swallows its
request's cancellation, a loop of retries) is caught by a second, coarser limit: the
longest its phase may take by the point's plan (`phase_deadline_s`), every request
taking its full timeout.
"""

from __future__ import annotations

import math
from typing import Any

from base.errors import RunFailed

HEARTBEAT_S = 1.0
SLACK_S = 5.0


def silence_limit_s(request_timeout_s: float) -> float:
    return request_timeout_s + HEARTBEAT_S + SLACK_S


STARTUP_S = 15.0        # a worker's imports and first connections on a busy machine
SLACK_FRACTION = 0.25   # a loaded 2-core machine stretches every wait


def _rounds(requests: int, users: int) -> int:
    """Requests one user sends one after another when `users` share them."""
    return math.ceil(requests / max(1, users))


def phase_deadline_s(job: Any, phase: str) -> float:
    """The longest a worker's phase may take if every request takes its full timeout.

    `job` is a harness.run.job.LoadJob; `phase` is "warm" (from the worker's start:
    startup and the warmup requests, spread over users as LoadRunner.warmup does) or
    "result" (from "go": the measured requests or duration, the last requests in flight,
    the users' stagger). A slack on top for a busy machine."""
    timeout = job.timeout_s
    if phase == "warm":
        requests, users = job.warmup_plan()
        work = _rounds(requests, max(users, 1)) * timeout
        return STARTUP_S + work * (1 + SLACK_FRACTION) + SLACK_S
    if phase != "result":
        raise ValueError(f"phase must be 'warm' or 'result', not {phase!r}")
    if job.duration_s is not None:
        work = job.duration_s + timeout              # requests in flight at the end
    elif job.mode == "closed":
        work = _rounds(job.requests, job.concurrency) * timeout
    else:                                            # arrivals, then the cap's queue
        work = job.requests / job.rate + _rounds(job.requests, job.max_in_flight) * timeout
    if job.mode == "closed":
        work += job.concurrency * job.stagger_ms / 1000
    return work * (1 + SLACK_FRACTION) + SLACK_S


class PointFailed(RunFailed):
    """One load point failed (a worker died or froze, its server died); the run goes on.

    `results` holds what the surviving workers reported, kept as a partial row."""

    def __init__(self, message: str, results: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.results = results or []
