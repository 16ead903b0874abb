"""The runner -> worker hand-off: one worker's share of one load point, typed on both
sides of the process boundary, with its one JSON encoding."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import orjson

from clients.base import Target
from harness.scenario.model import Workload


@dataclass(frozen=True)
class LoadJob:
    """One worker's share of one load point: what the runner sends a worker process."""

    protocol: str
    target: Target                   # where the worker's clients connect
    workload: Workload
    mode: str                        # closed | open
    engine: str = "python"           # client engine: python | curl | browser
    concurrency: int = 1             # closed: users in this worker
    rate: float = 0.0                # open: requests/s from this worker
    arrival: str = "poisson"
    gamma_shape: float = 0.5
    max_in_flight: int = 1024
    requests: int | None = None      # this worker's share; or
    duration_s: float | None = None
    warmup: int = 10
    timeout_s: float = 30.0
    reuse: bool = True
    connections: int = 1             # Client instances (each its own connection(s))
    max_connections: int | None = None   # HTTP/1.1: cap per Client (callers queue)
    seed: int = 1
    keep_rows: bool = False
    stagger_ms: float = 0.0          # closed loop: user u starts u x stagger after "go"
    trace: bool = False              # keep every stream's per-token trace (network lab)
    worker: int = 0                  # this worker's index, for connection labels
    client_path: str = "auto"        # auto | async | blocking | sequential (docstring)
    slo_ms: dict[str, float] | None = None   # per-request limits (scenario `slo:`)
    model: str | None = None         # the model name requests carry (external targets)

    @property
    def slo_ns(self) -> dict[str, int] | None:
        return None if self.slo_ms is None else {k: int(v * 1e6) for k, v in self.slo_ms.items()}

    def warmup_plan(self) -> tuple[int, int]:
        """(requests, users) of the warmup: at least one request per user and per
        connection, so no connection is opened cold inside the measurement (a warmup of
        3 at concurrency 8 would leave 5 HTTP/1.1 connections to open while measured);
        (0, 0) when the scenario asked for no warmup (cold starts are the point)."""
        if not self.warmup:
            return 0, 0
        users = max(self.concurrency, self.connections)
        return max(self.warmup, users), users

    def to_json(self) -> bytes:
        """One line of JSON (the worker's first stdin line)."""
        return orjson.dumps({**dataclasses.asdict(self), "workload": self.workload.to_dict(),
                             "target": _target_to_dict(self.target)})

    @classmethod
    def from_json(cls, line: bytes | str) -> "LoadJob":
        data = orjson.loads(line)
        return cls(**{**data, "workload": Workload.from_dict(data["workload"]),
                      "target": _target_from_dict(data["target"])})


def _target_to_dict(t: Target) -> dict[str, Any]:
    out = dataclasses.asdict(t)
    out["ca"] = None if t.ca is None else str(t.ca)
    return out


def _target_from_dict(d: dict[str, Any]) -> Target:
    return Target(**{**d, "ca": None if d.get("ca") is None else Path(d["ca"]),
                     "dns": None if d.get("dns") is None else tuple(d["dns"])})
