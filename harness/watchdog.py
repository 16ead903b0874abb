"""How long the runner waits on a silent worker, and what a failed point is.

A worker reports progress every 0.2 s while requests complete and a heartbeat at least
every HEARTBEAT_S seconds otherwise (harness.worker), from its event loop. A worker
silent for longer than `silence_limit_s` is frozen (SIGSTOP, a deadlock, a loop stuck
in a C call): the runner kills it and fails the point. The limit allows one request
timeout on top (a blocking one-user loop may sit in one request that long) and a slack
for a busy machine.
"""

from __future__ import annotations

from typing import Any

HEARTBEAT_S = 1.0
SLACK_S = 5.0


def silence_limit_s(request_timeout_s: float) -> float:
    return request_timeout_s + HEARTBEAT_S + SLACK_S


class PointFailed(RuntimeError):
    """One load point failed (a worker died or froze, its server died); the run goes on.

    `results` holds what the surviving workers reported, kept as a partial row."""

    def __init__(self, message: str, results: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.results = results or []
