"""Scenario schema: YAML in, frozen dataclasses out, and the run plan.

Every section is described once, by a field table (`_Field` rows: key, checker,
default, when it applies). One generic reader walks a table, so each rule lives in
one row and the first problem found is reported with its full dotted path, what was
expected and what was given. scenarios/README.md is the user-facing reference of the
same tables; keep the two in step.

Values that do not apply (embed fields of a stream workload, open-loop fields of a
closed-loop load, ...) are None in the dataclasses and absent from `to_dict()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import operator
import random
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

import yaml

from .cells import make_cell, parse_cell
from .protocols import PROTOCOLS, STREAMING, UNARY

__all__ = [
    "ScenarioError", "Workload", "Load", "Warmup", "Connection", "Target", "Threshold",
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


class _Invalid(Exception):
    """Raised by checkers; parse_scenario adds the source and re-raises ScenarioError."""

    def __init__(self, field: str, message: str):
        super().__init__(field, message)
        self.field, self.message = field, message


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML terms ("8" is visibly a string)."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# --------------------------------------------------------------------------- dataclasses

@dataclass(frozen=True)
class Workload:
    type: Literal["embed", "stream"]
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
    policy: Literal["reuse", "new"]
    connections: int | Literal["auto"] | None   # None with policy "new"
    streams_per_connection: int | None

    def connections_for(self, protocol_id: str, users: int) -> int:
        """Connections one worker opens for `users` concurrent requests of a protocol."""
        if self.policy == "new":
            return users            # each request in flight has its own
        if self.streams_per_connection is not None:
            return math.ceil(users / self.streams_per_connection)
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
    source: str = field(default="<string>", compare=False)   # where it was read from

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as plain data (parse_scenario(to_dict()) == self)."""
        data = _plain(self)
        del data["source"]
        return data

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


def _plain(value: Any) -> Any:
    if isinstance(value, Threshold):
        return value.text
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


# --------------------------------------------------------------------------- checkers
# A checker takes (raw value, dotted path) and returns the parsed value or raises
# _Invalid. bool is refused wherever a number is expected (YAML `true` is not 1).

Checker = Callable[[Any, str], Any]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:       # an int too big for a float
        return False


def _range_text(lo: float, hi: float | None, lo_open: bool) -> str:
    if hi is not None:
        return f"in {lo:g}..{hi:g}"
    return f"> {lo:g}" if lo_open else f">= {lo:g}"


def _integer(lo: int, hi: int | None = None) -> Checker:
    expected = f"an integer {_range_text(lo, hi, False)}"

    def check(v: Any, path: str) -> int:
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            raise _Invalid(path, f"expected {expected}, got {_show(v)}")
        return v
    return check


def _number(lo: float, hi: float | None = None, lo_open: bool = False) -> Checker:
    expected = f"a number {_range_text(lo, hi, lo_open)}"

    def check(v: Any, path: str) -> float:
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)
              and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi))
        if not ok:
            raise _Invalid(path, f"expected {expected}, got {_show(v)}")
        return float(v)
    return check


def _choice(*options: str) -> Checker:
    expected = "one of " + ", ".join(f'"{o}"' for o in options)

    def check(v: Any, path: str) -> str:
        if not isinstance(v, str) or v not in options:
            raise _Invalid(path, f"expected {expected}, got {_show(v)}")
        return v
    return check


def _boolean(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise _Invalid(path, f"expected true or false, got {_show(v)}")
    return v


def _string(pattern: str | None = None, expected: str = "a non-empty string") -> Checker:
    regex = re.compile(pattern or r".+", re.S)

    def check(v: Any, path: str) -> str:
        if not isinstance(v, str) or not regex.fullmatch(v):
            raise _Invalid(path, f"expected {expected}, got {_show(v)}")
        return v
    return check


def _optional(inner: Checker) -> Checker:
    def check(v: Any, path: str) -> Any:
        return None if v is None else inner(v, path)
    return check


def _auto_or_integer(v: Any, path: str) -> int | str:
    if isinstance(v, str) and v == "auto":
        return v
    if not _is_int(v) or v < 1:
        raise _Invalid(path, f'expected "auto" or an integer >= 1, got {_show(v)}')
    return v


def _url(v: Any, path: str) -> str:
    parts = urlsplit(v) if isinstance(v, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(path, f'expected an http(s) URL such as "https://api.example.com/v1", '
                             f"got {_show(v)}")
    return v


def _items(v: Any, path: str, expected: str) -> list[tuple[Any, str]]:
    """(item, path of item) for a YAML list; anything else is refused."""
    if not isinstance(v, (list, tuple)):
        raise _Invalid(path, f"expected {expected}, got {_show(v)}")
    return [(x, f"{path}[{i}]") for i, x in enumerate(v)]


def _points(item: Checker, what: str) -> Checker:
    """A bare value or a non-empty list of distinct values; stored ascending."""
    def check(v: Any, path: str) -> tuple:
        pairs = _items(v, path, "") if isinstance(v, (list, tuple)) else [(v, path)]
        if not pairs:
            raise _Invalid(path, f"expected {what} or a non-empty list of them, got []")
        seen: dict[Any, str] = {}
        for raw, where in pairs:
            value = item(raw, where)
            if value in seen:
                raise _Invalid(where, f"duplicate of {seen[value]} ({_show(raw)})")
            seen[value] = where
        return tuple(sorted(seen))
    return check


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
        raise _Invalid(where, str(exc)) from None
    raise _Invalid(where, f"expected a protocol id such as rest-h1 (optionally @server "
                          f"+client), got {_show(raw)}")


def _protocols(v: Any, path: str) -> tuple[str, ...] | str:
    """A group name (resolved later, when the workload is known) or distinct cells."""
    if isinstance(v, str) and v in PROTOCOL_GROUPS:
        return v
    expected = 'a list of protocol ids or one of "unary", "streaming", "all"'
    pairs = _items(v, path, expected)
    if not pairs:
        raise _Invalid(path, f"expected {expected}, got []")
    seen: dict[str, str] = {}
    for raw, where in pairs:
        label = _cell(raw, where)
        if label in seen:
            raise _Invalid(where, f"duplicate of {seen[label]} ({_show(label)})")
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
        raise _Invalid(path, f'expected "metric op value[unit]" such as "p99 < 200ms", '
                             f"got {_show(v)}")
    metric, op, number, unit = match.groups()
    if metric not in METRICS:
        raise _Invalid(path, f"unknown metric {_show(metric)}; known: {', '.join(METRICS)}")
    units = _UNITS[METRICS[metric][0]]
    if unit not in units:
        allowed = ", ".join(u for u in units if u)
        raise _Invalid(path, f"unit {_show(unit)} does not fit {metric}; use {allowed}")
    value = float(number) * units[unit]
    if metric == "error_rate" and value > 1:
        raise _Invalid(path, f"error_rate above 100% in {_show(v)}: a bare number is a "
                             f"fraction 0..1; write percent with %, e.g. 1%")
    return Threshold(metric, op, value, v.strip())


# --------------------------------------------------------------------------- field tables

_REQUIRED = object()


@dataclass(frozen=True)
class _Field:
    key: str
    check: Checker
    default: Any = _REQUIRED        # raw value, run through `check` like a given one
    only: tuple[tuple[str, str], ...] = ()   # applies only when these siblings have these values


class _Section:
    """A mapping read through a field table into a dataclass, then a cross-field check."""

    def __init__(self, cls: type, fields: tuple[_Field, ...],
                 post: Callable[[dict, str], None] | None = None):
        self.cls, self.fields, self.post = cls, fields, post
        self.keys = [f.key for f in fields]

    def __call__(self, raw: Any, path: str) -> Any:
        return self.cls(**self.values(raw, path))

    def values(self, raw: Any, path: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            where = "" if path else " at the top level"
            raise _Invalid(path, f"expected a mapping{where}, got {_show(raw)}")
        _refuse_unknown(raw, path, self.keys)
        values: dict[str, Any] = {}
        for f in self.fields:
            values[f.key] = _read(f, raw, path, values)
        if self.post:
            self.post(values, path)
        return values


def _refuse_unknown(raw: dict, path: str, keys: list[str]) -> None:
    # Checked before any value: a misspelt key would otherwise surface as a puzzling
    # "required" error, or not at all when the intended key has a default.
    for key in raw:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"allowed: {', '.join(keys)}"
            raise _Invalid(_join(path, key), f"unknown key ({hint})")


def _read(f: _Field, raw: dict, path: str, siblings: dict[str, Any]) -> Any:
    where = _join(path, f.key)
    for key, wanted in f.only:
        if siblings[key] != wanted:
            if f.key in raw:
                raise _Invalid(where, f"only allowed when {_join(path, key)} is "
                                      f'"{wanted}" (it is "{siblings[key]}")')
            return None
    if f.key in raw:
        return f.check(raw[f.key], where)
    if f.default is _REQUIRED:
        when = " and ".join(f'{_join(path, k)} is "{v}"' for k, v in f.only)
        raise _Invalid(where, f"required when {when}" if when else "required field missing")
    return f.check(f.default, where)


_EMBED, _STREAM = (("type", "embed"),), (("type", "stream"),)
_CLOSED, _OPEN = (("mode", "closed"),), (("mode", "open"),)
_REUSE = (("policy", "reuse"),)

_WORKLOAD = _Section(Workload, (
    _Field("type", _choice("embed", "stream")),
    _Field("batch_size", _integer(1, 2048), 8, _EMBED),
    _Field("input_words", _integer(1, 4096), 16, _EMBED),
    _Field("distinct_inputs", _integer(1), 64, _EMBED),
    _Field("dimensions", _integer(1, 8192), 1536, _EMBED),
    _Field("encoding", _choice("float", "base64"), "float", _EMBED),
    _Field("compute_ms", _number(0), 0, _EMBED),
    _Field("server_cache", _boolean, False, _EMBED),
    _Field("prompt_tokens", _integer(1), 32, _STREAM),
    _Field("max_tokens", _integer(1, 100_000), 64, _STREAM),
    _Field("ttft_ms", _number(0), 0, _STREAM),
    _Field("itl_ms", _number(0), 0, _STREAM),
))


def _one_of_requests_or_duration(values: dict, path: str) -> None:
    if values["requests"] is not None and values["duration_s"] is not None:
        raise _Invalid(_join(path, "duration_s"), "give either requests or duration_s, not both")
    if values["duration_s"] is None and values["requests"] is None:
        values["requests"] = 200


_LOAD = _Section(Load, (
    _Field("mode", _choice("closed", "open"), "closed"),
    _Field("concurrency", _points(_integer(1), "an integer >= 1"), 1, _CLOSED),
    _Field("rate", _points(_number(0, lo_open=True), "a number > 0"), _REQUIRED, _OPEN),
    _Field("arrival", _choice("poisson", "constant", "gamma"), "poisson", _OPEN),
    _Field("gamma_shape", _number(0, lo_open=True), 0.5, _OPEN + (("arrival", "gamma"),)),
    _Field("max_in_flight", _integer(1), 1024, _OPEN),
    _Field("requests", _optional(_integer(1)), None),
    _Field("duration_s", _optional(_number(0, lo_open=True)), None),
    _Field("timeout_s", _number(0, lo_open=True), 30),
), post=_one_of_requests_or_duration)


def _not_both_connection_counts(values: dict, path: str) -> None:
    if values["connections"] not in ("auto", None) and values["streams_per_connection"]:
        raise _Invalid(_join(path, "streams_per_connection"),
                       "give either connections or streams_per_connection, not both")


_CONNECTION = _Section(Connection, (
    _Field("policy", _choice("reuse", "new"), "reuse"),
    _Field("connections", _auto_or_integer, "auto", _REUSE),
    _Field("streams_per_connection", _optional(_integer(1)), None, _REUSE),
), post=_not_both_connection_counts)

_TARGET = _Section(Target, (
    _Field("base_url", _url),
    _Field("model", _string()),
    _Field("api_key_env", _optional(_string(r"[A-Za-z_][A-Za-z0-9_]*",
                                            "an environment variable name")), None),
))


def _thresholds(v: Any, path: str) -> tuple[Threshold, ...]:
    pairs = _items(v, path, 'a list of strings such as "p99 < 200ms"')
    return tuple(_threshold(raw, where) for raw, where in pairs)


# --------------------------------------------------------------------------- cross-field rules
# Run after every field parsed alone, in this order.

def _protocol_problem(label: str, values: dict) -> str | None:
    """Why this protocol cell cannot run this scenario, or None."""
    cell = parse_cell(label)
    pid = cell.protocol
    kind = values["workload"].type
    if PROTOCOLS[pid].streaming != (kind == "stream"):
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
    chosen, kind = values["protocols"], values["workload"].type
    if isinstance(chosen, str):
        # A group means "those of the group that can run this scenario"; only a group
        # of the wrong kind altogether is an error.
        wrong = {"embed": "streaming", "stream": "unary"}[kind]
        if chosen == wrong:
            raise _Invalid("protocols", f'"{chosen}" protocols cannot run a {kind} workload '
                                        f"(workload.type)")
        values["protocols"] = tuple(p for p in PROTOCOL_GROUPS[chosen]
                                    if _protocol_problem(p, values) is None)
        return
    for i, pid in enumerate(chosen):
        problem = _protocol_problem(pid, values)
        if problem:
            raise _Invalid(f"protocols[{i}]", problem)


def _check_threshold_metrics(values: dict) -> None:
    kind = values["workload"].type
    for i, t in enumerate(values["thresholds"]):
        if METRICS[t.metric][1] and kind != "stream":
            raise _Invalid(f"thresholds[{i}]", f'{t.metric} needs a stream workload '
                                               f'(workload.type is "{kind}")')


def _check_target(values: dict) -> None:
    target, workload = values["target"], values["workload"]
    if target is None:
        return
    for key in ("compute_ms", "ttft_ms", "itl_ms"):
        if getattr(workload, key):
            raise _Invalid(f"workload.{key}", "simulated model time only applies to the "
                                              "built-in servers; remove it when target is set")
    if not values["tls"] and urlsplit(target.base_url).scheme == "https":
        raise _Invalid("target.base_url", "an https URL needs TLS, but tls is false")


def _cross_checks(values: dict, path: str) -> None:
    _resolve_protocols(values)
    _check_threshold_metrics(values)
    _check_target(values)


_SCENARIO = _Section(Scenario, (
    _Field("name", _string(r"[a-z0-9_-]+", "a name made of a-z, 0-9, _ and -")),
    _Field("description", _optional(_string(r".*", "a string")), None),
    _Field("workload", _WORKLOAD),
    _Field("protocols", _protocols, "all"),
    _Field("load", _LOAD),
    _Field("warmup", _Section(Warmup, (_Field("requests", _integer(0), 10),)), {}),
    _Field("repeats", _integer(1), 1),
    _Field("seed", _integer(0), 1),
    _Field("workers", _integer(1, 64), 1),
    _Field("connection", _CONNECTION, {}),
    _Field("tls", _boolean, True),
    _Field("thresholds", _thresholds, []),
    _Field("max_error_rate", _number(0, 1), 0.01),
    _Field("outputs", _Section(Outputs, (_Field("hgrm", _boolean, True),
                                         _Field("requests_csv", _boolean, False))), {}),
    _Field("target", _optional(_TARGET), None),
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
                None, None, f"duplicate key {_show(key)}", key_node.start_mark)
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
    except _Invalid as exc:
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
    workload = s.workload
    if workload.type == "stream":
        workload = dataclasses.replace(workload, max_tokens=min(workload.max_tokens, 16))
    # min(), not 3: a scenario that asked for no warmup (cold starts) keeps none.
    warmup = Warmup(min(s.warmup.requests, 3))
    return dataclasses.replace(s, load=load, workload=workload, warmup=warmup,
                               repeats=1, workers=1)


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
                                f"{_show(pid)} is not in this scenario; it has: "
                                f"{', '.join(scenario.protocols)}")
    kept = tuple(p for p in scenario.protocols if p in wanted)
    return dataclasses.replace(scenario, protocols=kept)


def expand_plan(scenario: Scenario) -> list[PlanPoint]:
    """Every (repeat, protocol, load point) to run, in run order.

    Protocol order is shuffled per repeat by random.Random(seed + repeat), so drift
    over a long run (thermal, caches, neighbours) does not always land on the same
    protocol, and the same seed gives the same order. Load points run ascending.
    """
    load = scenario.load
    plan = []
    for repeat in range(scenario.repeats):
        order = list(scenario.protocols)
        random.Random(scenario.seed + repeat).shuffle(order)
        plan += [PlanPoint(repeat, pid, load.mode, concurrency, rate)
                 for pid in order for concurrency, rate in load.points()]
    return plan
