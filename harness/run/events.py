"""The worker -> runner hand-off: what a worker process reports, one JSON line each.

    warm      after warmup: how many requests ran, how many failed, one error sample
    progress  every 0.2 s while measuring: requests done
    alive     at least every HEARTBEAT_S s throughout (harness.run.watchdog)
    warning   something the user should hear now (a target that does not answer)
    result    the measured window: wall and CPU time, socket counters, the recorder
    failure   the worker cannot go on: why, and its traceback if it crashed
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson


@dataclass(frozen=True)
class Warm:
    NAME: ClassVar[str] = "warm"
    errors: int
    n: int
    sample: str = ""


@dataclass(frozen=True)
class Progress:
    NAME: ClassVar[str] = "progress"
    done: int


@dataclass(frozen=True)
class Alive:
    NAME: ClassVar[str] = "alive"


@dataclass(frozen=True)
class Warning:  # noqa: A001 (a worker's warning event, not the builtin category)
    NAME: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True)
class Result:
    NAME: ClassVar[str] = "result"
    wall_s: float
    client_cpu_s: float
    socket_wire: dict[str, int]
    t0_ns: int
    client_path: str
    recorder: dict[str, Any] = field(repr=False)     # harness.measure.recorder's JSON form


@dataclass(frozen=True)
class Failure:
    NAME: ClassVar[str] = "failure"
    message: str
    traceback: str = ""


Event = Warm | Progress | Alive | Warning | Result | Failure
_BY_NAME = {cls.NAME: cls for cls in (Warm, Progress, Alive, Warning, Result, Failure)}


def encode(event: Event) -> bytes:
    """One line: {"event": NAME, **fields}."""
    return orjson.dumps({"event": event.NAME, **dataclasses.asdict(event)}) + b"\n"


def decode(line: bytes | str) -> Event:
    data = orjson.loads(line)
    try:
        cls = _BY_NAME[data.pop("event")]
    except KeyError as exc:
        raise ValueError(f"not a worker event: {line[:200]!r}") from exc
    return cls(**data)
