"""Scenario schema: YAML in, frozen dataclasses out, and the run plan.

Every section is described once, by a field table (`Field` rows read by harness/schema.py:
key, checker, default, when it applies), so each rule lives in one row and the first
problem found is reported with its full dotted path, what was expected and what was
given. The `network:` section lives in scenario_network.py. scenarios/README.md is the
user-facing reference of the same tables; keep the two in step.

Values that do not apply (embed fields of a stream workload, open-loop fields of a
closed-loop load, ...) are None in the dataclasses and absent from `to_dict()`.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import random
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from .cells import make_cell, parse_cell
from .linkspec import LinkSpec
from .groups import check_groups, parse_groups, restrict
from .protocols import PROTOCOLS, STREAM_OF, STREAMING, UNARY
from .scenario_network import Network, network_section
from .schema import (
    REQUIRED,
    Field,
    Invalid,
    Section,
    boolean,
    choice,
    integer,
    items,
    join,
    number,
    optional,
    points,
    show,
    string,
    sweep,
    url,
)

__all__ = [
    "ScenarioError", "Workload", "Stage", "Load", "Warmup", "Connection", "Target", "Threshold",
    "Outputs", "Scenario", "PlanPoint", "load_scenario", "parse_scenario", "quick",
    "with_protocols", "expand_plan", "PROTOCOL_GROUPS", "TARGET_PROTOCOLS", "METRICS",
]


# --------------------------------------------------------------------------- errors

class ScenarioError(Exception):
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

@dataclass(frozen=True)
class Workload:
    type: Literal["embed", "stream", "pipeline"]
    # embed only (None for stream)
    batch_size: int | None
    input_words: int | None
    distinct_inputs: int | None
    dimensions: int | None
    encoding: Literal["float", "base64"] | None
    compute_ms: float | None
    server_cache: bool | None
    # stream only (None for embed)
    prompt_tokens: int | None
    max_tokens: int | None
    ttft_ms: float | None
    itl_ms: float | None
    # pipeline only: one user request is these stages, run one after another
    stages: tuple["Stage", ...] | None = None


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
    mode: Literal["closed", "open"]
    concurrency: tuple[int, ...] | None     # closed only, ascending
    rate: tuple[float, ...] | None          # open only, requests/s, ascending
    arrival: Literal["poisson", "constant", "gamma"] | None   # open only
    gamma_shape: float | None               # open + gamma only
    max_in_flight: int | None               # open only
    requests: int | None                    # exactly one of requests / duration_s is set
    duration_s: float | None
    timeout_s: float
    stagger_ms: float | None = None         # closed only: user u starts u x stagger_ms late

    def points(self) -> list[tuple[int | None, float | None]]:
        """(concurrency, rate) of every load point, ascending."""
        if self.mode == "closed":
            return [(c, None) for c in self.concurrency]
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
    # Every workload: `workload` is the first; a scenario may give one embed and one
    # stream workload, and each protocol runs the one of its kind.
    workloads: tuple[Workload, ...] = ()
    # Named groups of cells (harness.groups): the first is ranked, later ones beside it.
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
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
    load_kind: Literal["closed", "open"]
    concurrency: int | None
    rate: float | None
    connection: Connection | None = None     # the swept connection count's policy, if swept
    link: LinkSpec | None = None             # the emulated link, when network: is set
    tls_version: str | None = None           # when the scenario sweeps it
    dns_cache: bool | None = None            # with dns: the resolver cache on or off
    resumption: str | None = None            # "session" / "0rtt": new connections resume


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


# --------------------------------------------------------------------------- protocol facts

PROTOCOL_GROUPS = {"unary": UNARY, "streaming": STREAMING, "all": tuple(PROTOCOLS)}
# An OpenAI-compatible endpoint speaks HTTP/1.1 or HTTP/2 JSON and SSE, nothing else.
TARGET_PROTOCOLS = ("rest-h1", "rest-h2", "sse-h1", "sse-h2")
# TLS modes each server kind offers, first = the one used when `tls` asks for the
# other. Mirrors servers/: uvicorn (h1), grpc.aio and websockets serve cleartext;
# hypercorn h2 serves TLS and optionally h2c; QUIC is always TLS.
_TLS_MODES = {"h1": (False,), "h2": (True, False), "h3": (True,),
              "grpc": (False,), "ws": (False,)}


def _multiplexed(protocol_id: str) -> bool:
    return parse_cell(protocol_id).kind != "h1"


def _cell(raw: Any, where: str) -> str:
    """The canonical label of one protocols entry: "rest-h1@granian" or a mapping."""
    try:
        if isinstance(raw, str):
            return parse_cell(raw).label
        if isinstance(raw, dict):
            unknown = set(raw) - {"protocol", "server", "client"}
            if unknown or not isinstance(raw.get("protocol"), str):
                raise ValueError("expected {protocol: ID, server: NAME, client: NAME} "
                                 "(server and client optional)")
            return make_cell(raw["protocol"], raw.get("server"), raw.get("client")).label
    except ValueError as exc:
        raise Invalid(where, str(exc)) from None
    raise Invalid(where, f"expected a protocol id such as rest-h1 (optionally @server "
                          f"+client), got {show(raw)}")


def _protocols(v: Any, path: str) -> tuple[str, ...] | str:
    """A group name (resolved later, when the workload is known) or distinct cells."""
    if isinstance(v, str) and v in PROTOCOL_GROUPS:
        return v
    expected = 'a list of protocol ids or one of "unary", "streaming", "all"'
    pairs = items(v, path, expected)
    if not pairs:
        raise Invalid(path, f"expected {expected}, got []")
    seen: dict[str, str] = {}
    for raw, where in pairs:
        label = _cell(raw, where)
        if label in seen:
            raise Invalid(where, f"duplicate of {seen[label]} ({show(label)})")
        seen[label] = where
    return tuple(seen)


# --------------------------------------------------------------------------- thresholds

# metric -> (unit kind, needs a stream workload)
METRICS: dict[str, tuple[str, bool]] = {
    **{m: ("time", False) for m in ("p50", "p90", "p95", "p99", "p999", "max", "mean")},
    "error_rate": ("fraction", False),
    "throughput": ("rate", False),
    **{m: ("time", True) for m in ("ttft_p50", "ttft_p99", "itl_p99")},
}
# unit kind -> {unit: factor to the base unit}; "" is the unit-less form
_UNITS = {
    "time": {"": 1.0, "us": 1e-3, "ms": 1.0, "s": 1e3},
    "fraction": {"": 1.0, "%": 1e-2},
    "rate": {"": 1.0, "rps": 1.0},
}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_THRESHOLD_RE = re.compile(
    r"\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-z%]*)\s*")


def _threshold(v: Any, path: str) -> Threshold:
    match = _THRESHOLD_RE.fullmatch(v) if isinstance(v, str) else None
    if match is None:
        raise Invalid(path, f'expected "metric op value[unit]" such as "p99 < 200ms", '
                             f"got {show(v)}")
    metric, op, number, unit = match.groups()
    if metric not in METRICS:
        raise Invalid(path, f"unknown metric {show(metric)}; known: {', '.join(METRICS)}")
    units = _UNITS[METRICS[metric][0]]
    if unit not in units:
        allowed = ", ".join(u for u in units if u)
        raise Invalid(path, f"unit {show(unit)} does not fit {metric}; use {allowed}")
    value = float(number) * units[unit]
    if metric == "error_rate" and value > 1:
        raise Invalid(path, f"error_rate above 100% in {show(v)}: a bare number is a "
                             f"fraction 0..1; write percent with %, e.g. 1%")
    return Threshold(metric, op, value, v.strip())


_EMBED, _STREAM = (("type", "embed"),), (("type", "stream"),)
_PIPELINE = (("type", "pipeline"),)
_CLOSED, _OPEN = (("mode", "closed"),), (("mode", "open"),)
_REUSE = (("policy", "reuse"),)

def _stages(v: Any, path: str) -> tuple[Stage, ...]:
    pairs = items(v, path, "a list of stages")
    if not pairs:
        raise Invalid(path, "expected at least one stage, got []")
    stages = tuple(_stage(raw, where) for raw, where in pairs)
    seen: dict[str, int] = {}
    for i, stage in enumerate(stages):
        if stage.name in seen:
            raise Invalid(f"{path}[{i}].name", f"duplicate of {path}[{seen[stage.name]}].name "
                                               f"({show(stage.name)})")
        seen[stage.name] = i
    return stages


_STAGE_KEYS = ("name", "call", "calls", "parallel")


def _stage(raw: Any, path: str) -> Stage:
    """A stage: name, call (embed | stream), calls, parallel, and the call's own fields
    (those of an embed or a stream workload)."""
    if not isinstance(raw, dict):
        raise Invalid(path, f"expected a mapping with name, call, calls, parallel, got {show(raw)}")
    head = Section(dict, (
        Field("name", string(r"[a-z0-9_-]+", "a name made of a-z, 0-9, _ and -")),
        Field("call", choice("embed", "stream")),
        Field("calls", integer(1, 10_000), 1),
        Field("parallel", integer(1, 256), 1),
    ))
    own = {k: raw[k] for k in _STAGE_KEYS if k in raw}
    rest = {k: v for k, v in raw.items() if k not in _STAGE_KEYS}
    keys = _STAGE_KEYS + tuple(f.key for f in _CALL.fields if f.key != "type")
    _refuse_unknown_stage_key(raw, path, keys)
    values = head.values(own, path)
    try:
        work = _CALL({**rest, "type": values["call"]}, path)
    except Invalid as exc:      # the user wrote `call`, not `type`
        raise Invalid(exc.field, exc.message.replace(f"{path}.type", f"{path}.call")) from None
    if values["parallel"] > values["calls"]:
        raise Invalid(join(path, "parallel"), f"{values['parallel']} in flight is more than "
                                              f"the stage's {values['calls']} calls")
    return Stage(values["name"], values["calls"], values["parallel"], work)


def _refuse_unknown_stage_key(raw: dict, path: str, keys: tuple[str, ...]) -> None:
    for key in raw:
        if key not in keys:
            raise Invalid(join(path, key), f"unknown key; a stage takes {', '.join(_STAGE_KEYS)} "
                                           f"and the fields of an embed or stream workload")


_CALL_FIELDS = (
    Field("type", choice("embed", "stream")),
    Field("batch_size", integer(1, 2048), 8, _EMBED),
    Field("input_words", integer(1, 4096), 16, _EMBED),
    Field("distinct_inputs", integer(1), 64, _EMBED),
    Field("dimensions", integer(1, 8192), 1536, _EMBED),
    Field("encoding", choice("float", "base64"), "float", _EMBED),
    Field("compute_ms", number(0), 0, _EMBED),
    Field("server_cache", boolean, False, _EMBED),
    Field("prompt_tokens", integer(1), 32, _STREAM),
    Field("max_tokens", integer(1, 100_000), 64, _STREAM),
    Field("ttft_ms", number(0), 0, _STREAM),
    Field("itl_ms", number(0), 0, _STREAM),
)
_CALL = Section(Workload, _CALL_FIELDS)       # one call: an embed or a stream request
_WORKLOAD = Section(Workload, (
    Field("type", choice("embed", "stream", "pipeline")),
    *_CALL_FIELDS[1:],
    Field("stages", _stages, REQUIRED, _PIPELINE),
))


def _workloads(v: Any, path: str) -> tuple[Workload, ...]:
    """One workload, or a list of one embed and one stream workload: each protocol then
    runs the one of its kind (embed for unary protocols, stream for streaming ones)."""
    if not isinstance(v, list):
        return (_WORKLOAD(v, path),)
    found = tuple(_WORKLOAD(x, where) for x, where in items(v, path, ""))
    if not found:
        raise Invalid(path, "expected a workload or a list of them, got []")
    for i, w in enumerate(found):
        if w.type == "pipeline" and len(found) > 1:
            raise Invalid(f"{path}[{i}].type", "a pipeline is a whole workload (its stages "
                                               "give the embed and stream calls); give it alone")
    seen: dict[str, int] = {}
    for i, w in enumerate(found):
        if w.type in seen:
            raise Invalid(f"{path}[{i}].type", f'a second "{w.type}" workload (also '
                                               f"{path}[{seen[w.type]}]); give at most one "
                                               "embed and one stream workload")
        seen[w.type] = i
    return found


# Closed-loop users per scenario: each may hold a connection (a file descriptor and an
# ephemeral port on both ends) and a task; past a few thousand a 2-core machine measures
# its scheduler, not a protocol, and far past it a run exhausts descriptors or hangs.
MAX_CONCURRENCY = 4096


def _one_of_requests_or_duration(values: dict, path: str) -> None:
    users = max(values.get("concurrency") or (1,))
    if values["requests"] is not None and users > values["requests"]:
        raise Invalid(join(path, "concurrency"), f"{users} users for {values['requests']} "
                                                  f"requests: a user would never send one; "
                                                  f"use at most as many users as requests")
    if values["requests"] is not None and values["duration_s"] is not None:
        raise Invalid(join(path, "duration_s"), "give either requests or duration_s, not both")
    if values["duration_s"] is None and values["requests"] is None:
        values["requests"] = 200


_LOAD = Section(Load, (
    Field("mode", choice("closed", "open"), "closed"),
    Field("concurrency", points(integer(1, MAX_CONCURRENCY),
                                f"an integer in 1..{MAX_CONCURRENCY}"), 1, _CLOSED),
    Field("rate", points(number(0, lo_open=True), "a number > 0"), REQUIRED, _OPEN),
    Field("arrival", choice("poisson", "constant", "gamma"), "poisson", _OPEN),
    Field("gamma_shape", number(0, lo_open=True), 0.5, _OPEN + (("arrival", "gamma"),)),
    Field("max_in_flight", integer(1), 1024, _OPEN),
    Field("requests", optional(integer(1)), None),
    Field("duration_s", optional(number(0, lo_open=True)), None),
    Field("timeout_s", number(0, lo_open=True), 30),
    Field("stagger_ms", number(0), 0, _CLOSED),
), post=_one_of_requests_or_duration)


def _connection_count(v: Any, path: str) -> int | str:
    if isinstance(v, str) and v in ("auto", "per_stream"):
        return v
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Invalid(path, f'expected "auto", "per_stream" or an integer >= 1, got {show(v)}')
    return v


def _not_both_connection_counts(values: dict, path: str) -> None:
    if values["connections"] not in ("auto", None) and values["streams_per_connection"]:
        raise Invalid(join(path, "streams_per_connection"),
                       "give either connections or streams_per_connection, not both")


_CONNECTION = Section(Connection, (
    Field("policy", sweep(choice("reuse", "new"), scalar=True), "reuse"),
    Field("connections", sweep(_connection_count, scalar=True), "auto", _REUSE),
    Field("streams_per_connection", optional(integer(1)), None, _REUSE),
), post=_not_both_connection_counts)

_TARGET = Section(Target, (
    Field("base_url", url),
    Field("model", string()),
    Field("api_key_env", optional(string(r"[A-Za-z_][A-Za-z0-9_]*",
                                            "an environment variable name")), None),
))


def _resumption(v: Any, path: str) -> str:
    """none (full handshakes), session (TLS session resumption: ticket or session ID)
    or 0rtt (QUIC: resumed, the request sent as early data). YAML false means none."""
    if v is False:
        return "none"
    if v not in ("none", "session", "0rtt"):
        raise Invalid(path, f'expected "none", "session" or "0rtt" (or a list of them), '
                            f"got {show(v)}")
    return v


def _tls_version(v: Any, path: str) -> str:
    """ "1.3" or "1.2". YAML reads an unquoted 1.3 as a number: take that too."""
    text = f"{v:g}" if isinstance(v, float) else v
    if text not in ("1.2", "1.3"):
        raise Invalid(path, f'expected "1.2" or "1.3" (or a list of them), got {show(v)}')
    return text


_DNS = Section(Dns, (
    Field("cache", sweep(boolean), True),
    Field("delay_ms", number(0), 0),
    Field("ttl_s", integer(1, 86400), 300),
))


def _thresholds(v: Any, path: str) -> tuple[Threshold, ...]:
    pairs = items(v, path, 'a list of strings such as "p99 < 200ms"')
    return tuple(_threshold(raw, where) for raw, where in pairs)


# --------------------------------------------------------------------------- cross-field rules
# Run after every field parsed alone, in this order.

def _kinds(values: dict) -> tuple[str, ...]:
    return tuple(w.type for w in values["workloads"])


def _protocol_problem(label: str, values: dict) -> str | None:
    """Why this protocol cell cannot run this scenario, or None."""
    cell = parse_cell(label)
    pid = cell.protocol
    kinds = _kinds(values)
    if kinds == ("pipeline",):
        if PROTOCOLS[pid].streaming:
            return (f'"{pid}" is a streaming protocol; a pipeline names the unary protocol '
                    f"of each family ({', '.join(UNARY)}) and streams its answer over the "
                    f"family's streaming protocol ({', '.join(STREAM_OF[u] for u in UNARY)})")
    elif ("stream" if PROTOCOLS[pid].streaming else "embed") not in kinds:
        kind = kinds[0]
        needed = "streaming" if kind == "stream" else "unary"
        return (f'"{pid}" cannot run a {kind} workload (workload.type); '
                f"{needed} protocols: {', '.join(PROTOCOL_GROUPS[needed])}")
    if values["target"] is not None:
        if pid not in TARGET_PROTOCOLS:
            return f'"{pid}" cannot be used with target; allowed: {", ".join(TARGET_PROTOCOLS)}'
        if cell.server_kind != cell.kind:
            return f'"{label}" names a server, but with target the endpoint is the server'
    elif not values["tls"] and False not in _TLS_MODES[cell.kind]:
        return f'"{pid}" always runs over TLS; it cannot run with tls: false'
    return None


def _resolve_protocols(values: dict) -> None:
    chosen, kinds = values["protocols"], _kinds(values)
    if isinstance(chosen, str):
        # A group means "those of the group that can run this scenario"; only a group
        # of the wrong kind altogether is an error.
        kind = kinds[0]
        wrong = {"embed": "streaming", "stream": "unary", "pipeline": "streaming"}[kind]
        if chosen == wrong and len(kinds) == 1:
            raise Invalid("protocols", f'"{chosen}" protocols cannot run a {kind} workload '
                                        f"(workload.type)")
        values["protocols"] = tuple(p for p in PROTOCOL_GROUPS[chosen]
                                    if _protocol_problem(p, values) is None)
        return
    for i, pid in enumerate(chosen):
        problem = _protocol_problem(pid, values)
        if problem:
            raise Invalid(f"protocols[{i}]", problem)


def _check_threshold_metrics(values: dict) -> None:
    kind = _kinds(values)[0]
    for i, t in enumerate(values["thresholds"]):
        if METRICS[t.metric][1] and "stream" not in _kinds(values):
            raise Invalid(f"thresholds[{i}]", f'{t.metric} needs a stream workload '
                                               f'(workload.type is "{kind}")')


def _check_target(values: dict) -> None:
    target = values["target"]
    if target is None:
        return
    calls = []          # (field path prefix, what one call sends)
    for w in values["workloads"]:
        calls.append(("workload.", w))
        calls += [(f"workload.stages[{i}].", st.work) for i, st in enumerate(w.stages or ())]
    for where, workload in calls:
        for key in ("compute_ms", "ttft_ms", "itl_ms"):
            if getattr(workload, key):
                raise Invalid(where + key, "simulated model time only applies to the "
                                           "built-in servers; remove it when target is set")
    if values["network"] is not None:
        raise Invalid("network", "the network lab runs the built-in servers behind an "
                                 "emulated link; remove target or network")
    if values["dns"] is not None:
        raise Invalid("dns", "the DNS step serves the built-in servers' name; an external "
                             "target is resolved by the system; remove target or dns")
    if not values["tls"] and urlsplit(target.base_url).scheme == "https":
        raise Invalid("target.base_url", "an https URL needs TLS, but tls is false")


def _check_resumption(values: dict) -> None:
    wanted = values["resumption"]
    if wanted == ("none",):
        return
    policies = values["connection"].policy
    if "new" not in (policies if isinstance(policies, tuple) else (policies,)):
        raise Invalid("resumption", "resumption changes how a new connection's handshake "
                                    "goes; with connection.policy: reuse requests reuse an "
                                    "open connection and nothing resumes. Use "
                                    "connection.policy: new (or [new, reuse])")
    if values["target"] is not None:
        raise Invalid("resumption", "resumption is measured against the built-in servers; "
                                    "remove target or resumption")
    for i, pid in enumerate(values["protocols"]):
        cell = parse_cell(pid)
        modes = _TLS_MODES[cell.kind]
        tls = values["tls"] if values["tls"] in modes else modes[0]
        can = _resumption_support(cell, tls)
        if not set(wanted) & set(can):
            why = ("libcurl's session cache is off in its engine" if cell.client == "curl"
                   else "the browser keeps its own connections" if cell.client == "browser"
                   else "it runs without TLS" if not tls and cell.kind in ("h1", "h2")
                   else "its client cannot resume TLS sessions")
            raise Invalid("resumption", f"{show(cell.label)} can run only "
                                        f"{', '.join(map(show, can))} ({why}); add \"none\" "
                                        f"to the list so it runs without, or remove it")


def _check_dns(values: dict) -> None:
    if values["dns"] is None:
        return
    curl = [p for p in values["protocols"] if parse_cell(p).client == "curl"]
    if curl:
        raise Invalid("dns", f"libcurl resolves names itself, so the DNS step covers the "
                             f"python clients only; remove {', '.join(curl)} or dns")
    browser = [p for p in values["protocols"] if parse_cell(p).client == "browser"]
    if browser:
        raise Invalid("dns", f"the browser resolves names itself, so the DNS step covers "
                             f"the python clients only; remove {', '.join(browser)} or dns")


def _check_browser(values: dict) -> None:
    """The browser engine needs wirebench's servers (its page), pools its own connections
    and speaks HTTP/2 only over TLS."""
    browser = [p for p in values["protocols"] if parse_cell(p).client == "browser"]
    if not browser:
        return
    if values["target"] is not None:
        raise Invalid("target", f"{', '.join(browser)}: the browser engine loads its page "
                                "(/bench.html) from wirebench's own servers; remove them or "
                                "target")
    policies = values["connection"].policy
    if "new" in (policies if isinstance(policies, tuple) else (policies,)):
        raise Invalid("connection.policy", f"{', '.join(browser)}: the browser engine keeps "
                                           "the browser's own connection pool; use reuse")
    if values["tls"] is False and any(parse_cell(p).kind == "h2" for p in browser):
        raise Invalid("tls", "browsers speak HTTP/2 only over TLS (no h2c): remove "
                             "tls: false or the h2 +browser cells")


def _groups(v: Any, path: str) -> tuple:
    return parse_groups(v, path, _cell)


def _cross_checks(values: dict, path: str) -> None:
    values["workloads"] = values["workload"]
    values["workload"] = values["workloads"][0]
    if values["groups"] and values["protocols"] == "all":     # protocols: not given
        values["protocols"] = tuple(c for _, cells in values["groups"] for c in cells)
    _resolve_protocols(values)
    check_groups(values["groups"], values["protocols"])
    _check_threshold_metrics(values)
    _check_target(values)
    _check_dns(values)
    _check_resumption(values)
    _check_browser(values)


_SCENARIO = Section(Scenario, (
    Field("name", string(r"[a-z0-9_-]+", "a name made of a-z, 0-9, _ and -")),
    Field("description", optional(string(r".*", "a string")), None),
    Field("workload", _workloads),
    Field("protocols", _protocols, "all"),
    Field("groups", _groups, None),
    Field("load", _LOAD),
    Field("warmup", Section(Warmup, (Field("requests", integer(0), 10),)), {}),
    Field("repeats", integer(1), 1),
    Field("seed", integer(0), 1),
    Field("workers", integer(1, 64), 1),
    Field("connection", _CONNECTION, {}),
    Field("tls", boolean, True),
    Field("thresholds", _thresholds, []),
    Field("max_error_rate", number(0, 1), 0.01),
    Field("outputs", Section(Outputs, (Field("hgrm", boolean, True),
                                         Field("requests_csv", boolean, False))), {}),
    Field("target", optional(_TARGET), None),
    Field("network", optional(network_section), None),
    Field("tls_version", sweep(_tls_version), "1.3"),
    Field("dns", optional(_DNS), None),
    Field("resumption", sweep(_resumption), "none"),
), post=_cross_checks)


# --------------------------------------------------------------------------- loading

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML keeps the last, silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:       # unhashable: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {show(key)}", key_node.start_mark)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _construct_mapping)


def load_scenario(path: str | PathLike) -> Scenario:
    """Read and validate a YAML scenario file; every problem is a ScenarioError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "", "file not found") from None
    except UnicodeDecodeError:
        raise ScenarioError(source, "", "not UTF-8 text") from None
    except OSError as exc:
        raise ScenarioError(source, "", exc.strerror or str(exc)) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(source, exc) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(source, "", f"YAML error: {exc}") from None
    if data is None:
        raise ScenarioError(source, "", "the file is empty")
    return parse_scenario(data, source)


def _yaml_error(source: str, exc: yaml.MarkedYAMLError) -> ScenarioError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if exc.context and exc.problem:
        problem += f" ({exc.context})"
    if mark is None:
        return ScenarioError(source, "", f"YAML error: {problem}")
    line, column = mark.line + 1, mark.column + 1
    return ScenarioError(source, "", f"line {line}, column {column}: YAML error: {problem}",
                         line, column)


def parse_scenario(data: dict, source: str = "<string>") -> Scenario:
    """Validate plain data (as YAML gives it) into a Scenario; first problem raises."""
    try:
        values = _SCENARIO.values(data, "")
    except Invalid as exc:
        raise ScenarioError(source, exc.field, exc.message) from None
    return Scenario(**values, source=source)


# --------------------------------------------------------------------------- derived scenarios

def _ends(points: tuple | None) -> tuple | None:
    return None if points is None else tuple(dict.fromkeys((points[0], points[-1])))


def quick(scenario: Scenario) -> Scenario:
    """A fast smoke version: both ends of the sweep, few requests, one repeat/worker."""
    s, load = scenario, scenario.load
    load = dataclasses.replace(
        load, concurrency=_ends(load.concurrency), rate=_ends(load.rate),
        requests=30 if load.requests is None else min(load.requests, 30), duration_s=None)
    workloads = tuple(_quick_workload(w) for w in s.workloads or (s.workload,))
    workload = workloads[0]
    # min(), not 3: a scenario that asked for no warmup (cold starts) keeps none.
    warmup = Warmup(min(s.warmup.requests, 3))
    network = s.network.ends() if s.network is not None else None
    return dataclasses.replace(s, load=load, workload=workload, workloads=workloads,
                               warmup=warmup, repeats=1, workers=1, network=network)


def _quick_workload(w: Workload) -> Workload:
    """Streams capped at 16 tokens; a pipeline's stages at two rounds of their fan-out."""
    if w.type == "stream":
        return dataclasses.replace(w, max_tokens=min(w.max_tokens, 16))
    if w.type == "pipeline":
        stages = tuple(dataclasses.replace(st, calls=min(st.calls, 2 * st.parallel),
                                           work=_quick_workload(st.work)) for st in w.stages)
        return dataclasses.replace(w, stages=stages)
    return w


def with_protocols(scenario: Scenario, ids) -> Scenario:
    """The scenario restricted to `ids` (kept in the scenario's order)."""
    wanted = list(ids)
    if not wanted:
        raise ScenarioError(scenario.source, "protocols", "no protocol selected")
    for i, pid in enumerate(wanted):
        try:
            wanted[i] = pid = parse_cell(pid).label
        except ValueError as exc:
            raise ScenarioError(scenario.source, "protocols", str(exc)) from None
        if pid not in scenario.protocols:
            raise ScenarioError(scenario.source, "protocols",
                                f"{show(pid)} is not in this scenario; it has: "
                                f"{', '.join(scenario.protocols)}")
    kept = tuple(p for p in scenario.protocols if p in wanted)
    return dataclasses.replace(scenario, protocols=kept, groups=restrict(scenario.groups, kept))


def expand_plan(scenario: Scenario) -> list[PlanPoint]:
    """Every (repeat, link, protocol, connection policy, load point) to run, in run order.

    Protocol order is shuffled per repeat by random.Random(seed + repeat), so drift
    over a long run (thermal, caches, neighbours) does not always land on the same
    protocol, and the same seed gives the same order. Links are the outer loop (one
    reconfiguration each); load points run ascending.
    """
    load = scenario.load
    links = scenario.network.links if scenario.network is not None else (None,)
    plan = []
    for repeat in range(scenario.repeats):
        order = list(scenario.protocols)
        random.Random(scenario.seed + repeat).shuffle(order)
        for link in links:
            for pid in order:
                for conn in _connection_choices(scenario.connection, pid, load):
                    for tls in _tls_choices(scenario, pid):
                        for cache in _dns_choices(scenario):
                            for resume in _resumption_choices(scenario, pid, conn):
                                plan += [PlanPoint(repeat, pid, load.mode, concurrency,
                                                   rate, conn, link, tls, cache, resume)
                                         for concurrency, rate in load.points()]
    return plan


def _tls_choices(scenario: Scenario, pid: str) -> list[str | None]:
    """The swept TLS versions, for protocols that run over TLS here (QUIC is 1.3 only)."""
    if len(scenario.tls_version) == 1:
        return [None]
    if not scenario.uses_tls(pid) or parse_cell(pid).kind == "h3":
        return [None]
    return list(scenario.tls_version)


def resumption_support(scenario: Scenario, pid: str) -> tuple[str, ...]:
    """The resumption values a cell can run: "session" where wirebench's own client
    speaks TLS over TCP (HTTP/1.1, HTTP/2) or QUIC; "0rtt" on QUIC only (Python's ssl
    cannot send TLS 1.3 early data over TCP). libcurl, gRPC and WebSocket cells: none."""
    return _resumption_support(parse_cell(pid), scenario.uses_tls(pid))


def _resumption_support(cell: Any, tls: bool) -> tuple[str, ...]:
    if cell.client in ("curl", "browser") or not tls or cell.kind not in ("h1", "h2", "h3"):
        return ("none",)
    return ("none", "session", "0rtt") if cell.kind == "h3" else ("none", "session")


def _resumption_choices(scenario: Scenario, pid: str,
                        conn: Connection | None) -> list[str | None]:
    """The swept resumption values this point runs: only for a new connection per
    request (a reused connection has no handshake to resume) and only those the cell
    supports; None stands for "none"."""
    policy = conn.policy if conn is not None else scenario.connection.policy
    if policy != "new":
        return [None]
    can = resumption_support(scenario, pid)
    return [None if v == "none" else v for v in scenario.resumption if v in can] or [None]


def _dns_choices(scenario: Scenario) -> list[bool | None]:
    return list(scenario.dns.cache) if scenario.dns is not None else [None]


def _connection_choices(conn: Connection, pid: str, load: Load) -> list[Connection | None]:
    """The swept connection counts that mean something for this protocol: HTTP/1.1
    cannot carry several requests at once on one connection, so it only runs the
    counts that give every user its own."""
    if not conn.swept:
        return [None]                        # the scenario's own policy, nothing swept
    choices = conn.sweep()
    if _multiplexed(pid):
        return choices
    users = max(load.concurrency or (1,))
    new = [c for c in choices if c.policy == "new"]
    own = [c for c in choices if c.policy == "reuse" and (
        c.connections in ("auto", "per_stream") or c.connections >= users)]
    return new + own[:1] or choices[:1]
