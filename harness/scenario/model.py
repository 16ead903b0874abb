"""A scenario as frozen dataclasses, and the one error every bad scenario raises."""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from base.cells import Cell, parse_cell
from base.errors import BadInput
from base.protocols import PROTOCOLS
from harness.scenario.linkspec import LinkSpec
from harness.scenario.network import Network
from harness.scenario.cluster import Cluster
from harness.scenario.remote import Remote

# TLS modes each server kind offers, first = the one used when `tls` asks for the
# other. Mirrors servers/: uvicorn (h1), grpc.aio and websockets serve cleartext;
# hypercorn h2 serves TLS and optionally h2c; QUIC is always TLS.
_TLS_MODES = {"h1": (False,), "h2": (True, False), "h3": (True,),
              "grpc": (False,), "ws": (False,)}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _multiplexed(protocol_id: str) -> bool:
    return parse_cell(protocol_id).kind != "h1"


# --------------------------------------------------------------------------- errors

class ScenarioError(BadInput):
    """A bad scenario: `source: field: message` (field is a dotted path, or "")."""

    def __init__(self, source: str, field: str, message: str,
                 line: int | None = None, column: int | None = None):
        self.source, self.field, self.message = source, field, message
        self.line, self.column = line, column      # 1-based, YAML syntax errors only
        super().__init__(str(self))

    def __str__(self) -> str:
        return ": ".join(part for part in (self.source, self.field, self.message) if part)

    def __reduce__(self):
        # Worker processes pickle errors back to the parent: keep every attribute.
        return (type(self), (self.source, self.field, self.message, self.line, self.column))


# --------------------------------------------------------------------------- dataclasses

class Workload:
    """What each request of a run sends: one class per kind (EmbedWorkload,
    StreamWorkload, PipelineWorkload), each with only its own fields."""

    type: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (stages nested), as a worker process receives it."""
        return dataclasses.asdict(self)       # type: ignore[call-overload]

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Workload":
        """The inverse of to_dict; fields left out are None (a hand-written workload)."""
        return make_workload(**data)


@dataclass(frozen=True)
class EmbedWorkload(Workload):
    batch_size: int
    input_words: int
    distinct_inputs: int
    dimensions: int
    encoding: Literal["float", "base64"]
    compute_ms: float
    server_cache: bool
    type: Literal["embed"] = "embed"


@dataclass(frozen=True)
class StreamWorkload(Workload):
    prompt_tokens: int
    max_tokens: int
    ttft_ms: float
    itl_ms: float
    type: Literal["stream"] = "stream"


@dataclass(frozen=True)
class PipelineWorkload(Workload):
    # one user request is these stages, run one after another
    stages: tuple["Stage", ...]
    type: Literal["pipeline"] = "pipeline"


WORKLOAD_KINDS: dict[str, type[Workload]] = {
    "embed": EmbedWorkload, "stream": StreamWorkload, "pipeline": PipelineWorkload}


def make_workload(**values: Any) -> Workload:
    """The workload of values["type"] from the fields that are its own (others, such as
    the schema's not-applicable Nones, are dropped; a missing one is None)."""
    kind = values.get("type")
    if kind not in WORKLOAD_KINDS:
        raise ValueError(f"unknown workload type {kind!r}")
    cls = WORKLOAD_KINDS[kind]
    own = {f.name: values.get(f.name) for f in dataclasses.fields(cls)}
    if kind == "pipeline" and own["stages"] is not None:
        own["stages"] = tuple(
            st if isinstance(st, Stage) else
            Stage(st["name"], st["calls"], st["parallel"], make_workload(**st["work"]))
            for st in own["stages"])
    return cls(**own)


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline user request: `calls` calls of one kind, at most
    `parallel` of them in flight at once (1: strictly one after another)."""
    name: str
    calls: int
    parallel: int
    work: Workload                  # what each call sends (an embed or stream workload)


@dataclass(frozen=True)
class Load:
    mode: Literal["closed", "open", "sweep"]
    concurrency: tuple[int, ...] | None     # closed only, ascending
    rate: tuple[float, ...] | None          # open only, requests/s, ascending
    arrival: Literal["poisson", "constant", "gamma"] | None   # open only
    gamma_shape: float | None               # open + gamma only
    max_in_flight: int | None               # open only
    requests: int | None                    # exactly one of requests / duration_s is set
    duration_s: float | None
    timeout_s: float
    stagger_ms: float | None = None         # closed only: user u starts u x stagger_ms late
    # sweep only: bisect the open-loop rate in [rate_min, rate_max] for the highest one
    # whose goodput (share of requests keeping the SLO) is at least `goodput`, in at most
    # `steps` probes, until the bracket is within `tolerance` (harness.run.sweep)
    rate_min: float | None = None
    rate_max: float | None = None
    steps: int | None = None
    tolerance: float | None = None
    goodput: float | None = None

    def points(self) -> list[tuple[int | None, float | None]]:
        """(concurrency, rate) of every load point, ascending (a sweep: one point per
        cell, its rates chosen as it runs)."""
        if self.mode == "closed":
            return [(c, None) for c in self.concurrency]
        if self.mode == "sweep":
            return [(None, None)]
        return [(None, r) for r in self.rate]


@dataclass(frozen=True)
class Warmup:
    requests: int


@dataclass(frozen=True)
class Connection:
    policy: Literal["reuse", "new"] | tuple     # a tuple of both: a sweep (cold vs warm)
    # "auto": one multiplexed connection, or one per user where the protocol cannot
    # multiplex; "per_stream": one per user always; a tuple of these is a sweep.
    connections: int | Literal["auto", "per_stream"] | tuple | None   # None with policy "new"
    streams_per_connection: int | None

    def sweep(self) -> list["Connection"]:
        """One Connection per swept policy x connection count (itself if nothing is swept)."""
        out = []
        for policy in self.policy if isinstance(self.policy, tuple) else (self.policy,):
            if policy == "new":
                out.append(dataclasses.replace(self, policy="new", connections=None))
                continue
            counts = self.connections if isinstance(self.connections, tuple) else (self.connections,)
            out += [dataclasses.replace(self, policy="reuse", connections=c) for c in counts]
        return out

    @property
    def swept(self) -> bool:
        return isinstance(self.connections, tuple) or isinstance(self.policy, tuple)

    @property
    def label(self) -> str:
        return "new" if self.policy == "new" else str(self.connections)

    def connections_for(self, protocol_id: str, users: int) -> int:
        """Connections one worker opens for `users` concurrent requests of a protocol."""
        if self.policy == "new":
            return users            # each request in flight has its own
        if self.streams_per_connection is not None:
            return math.ceil(users / self.streams_per_connection)
        if self.connections == "per_stream":
            return users
        if self.connections != "auto":
            return self.connections
        return 1 if _multiplexed(protocol_id) else users


@dataclass(frozen=True)
class Target:
    base_url: str
    model: str
    api_key_env: str | None


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: Literal["<", "<=", ">", ">="]
    value: float        # base unit: ms (latency, ttft, itl), fraction (error_rate), rps
    text: str           # as written, for messages and to_dict()

    def check(self, value: float) -> bool:
        """True when `value` (in the metric's base unit) passes; NaN (no data) fails."""
        return _OPS[self.op](value, self.value)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Dns:
    """A real DNS step: a DNS server beside the app server, clients resolve through it."""
    cache: tuple[bool, ...]          # the client's resolver cache, on/off (a sweep)
    delay_ms: float                  # the server's delay before each answer
    ttl_s: int


@dataclass(frozen=True)
class Outputs:
    hgrm: bool
    requests_csv: bool


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str | None
    workload: Workload
    protocols: tuple[str, ...]
    load: Load
    warmup: Warmup
    repeats: int
    seed: int
    workers: int
    connection: Connection
    tls: bool
    thresholds: tuple[Threshold, ...]
    max_error_rate: float
    outputs: Outputs
    target: Target | None
    network: Network | None = None
    tls_version: tuple[str, ...] = ("1.3",)     # one or more (a sweep)
    dns: Dns | None = None
    resumption: tuple[str, ...] = ("none",)     # none / session / 0rtt (a sweep)
    cors: str | None = None     # the servers' --cors: "*" or origins, comma-separated
    # Per-request service levels, metric -> limit in ms (latency, ttft, tpot, itl): a
    # request meets the SLO when every one holds (goodput).
    slo: tuple[Threshold, ...] = ()
    # Every workload: `workload` is the first; a scenario may give one embed and one
    # stream workload, and each protocol runs the one of its kind.
    workloads: tuple[Workload, ...] = ()
    # Named groups of cells (harness.scenario.groups): the first is ranked, later ones beside it.
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    remote: Remote | None = None     # wirebench servers on another host (scenario/remote.py)
    cluster: Cluster | None = None   # load workers as Ray actors (scenario/cluster.py)
    source: str = field(default="<string>", compare=False)   # where it was read from

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as plain data (parse_scenario(to_dict()) == self)."""
        data = _plain(self)
        del data["source"]
        workloads = data.pop("workloads")
        if len(workloads) > 1:
            data["workload"] = workloads
        data["groups"] = {name: list(cells) for name, cells in self.groups}
        if not data["groups"]:
            del data["groups"]
        if data.get("remote"):
            data["remote"]["ports"] = dict(self.remote.ports)
        for key in ("remote", "cluster"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def workload_for(self, protocol_id: str) -> Workload:
        """The workload a protocol cell runs: the stream one for streaming protocols."""
        streaming = PROTOCOLS[parse_cell(protocol_id).protocol].streaming
        return next(w for w in self.workloads or (self.workload,)
                    if (w.type == "stream") == streaming)

    @property
    def workload_types(self) -> tuple[str, ...]:
        return tuple(w.type for w in self.workloads or (self.workload,))

    def uses_tls(self, protocol_id: str) -> bool:
        """Whether this protocol runs over TLS in this scenario."""
        if self.target is not None:
            return urlsplit(self.target.base_url).scheme == "https"
        modes = _TLS_MODES[parse_cell(protocol_id).kind]
        return self.tls if self.tls in modes else modes[0]


@dataclass(frozen=True)
class PlanPoint:
    repeat: int
    protocol: str
    load_kind: Literal["closed", "open", "sweep"]
    concurrency: int | None
    rate: float | None
    connection: Connection | None = None     # the swept connection count's policy, if swept
    link: LinkSpec | None = None             # the emulated link, when network: is set
    tls_version: str | None = None           # when the scenario sweeps it
    dns_cache: bool | None = None            # with dns: the resolver cache on or off
    resumption: str | None = None            # "session" / "0rtt": new connections resume
    cell: Cell = field(init=False, repr=False, compare=False)   # `protocol`, parsed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", parse_cell(self.protocol))


def _plain(value: Any) -> Any:
    if isinstance(value, Threshold):
        return value.text
    if isinstance(value, Network):
        return value.raw                     # as written: sweeps unexpanded
    if isinstance(value, Stage):             # as written: the call's fields inline
        work = _plain(value.work)
        return {"name": value.name, "call": work.pop("type"), "calls": value.calls,
                "parallel": value.parallel, **work}
    if dataclasses.is_dataclass(value):
        pairs = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return {k: _plain(v) for k, v in pairs if v is not None}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
