"""The scenario's sections, one field table each: protocols, thresholds, workloads,
load, connection, target, dns. Each row names its key, checker and default once."""

from __future__ import annotations

import re
from typing import Any

from base.cells import make_cell, parse_cell
from base.protocols import PROTOCOLS, STREAMING, UNARY
from harness.scenario.model import (
    Connection,
    Dns,
    Load,
    Stage,
    Target,
    Threshold,
    Workload,
    make_workload,
)
from harness.scenario.schema import (
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

# --------------------------------------------------------------------------- protocol facts

PROTOCOL_GROUPS = {"unary": UNARY, "streaming": STREAMING, "all": tuple(PROTOCOLS)}
# An OpenAI-compatible endpoint speaks HTTP/1.1 or HTTP/2 JSON and SSE, nothing else.
TARGET_PROTOCOLS = ("rest-h1", "rest-h2", "sse-h1", "sse-h2")



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
_CLOSED, _OPEN, _SWEEP = (("mode", "closed"),), (("mode", "open"),), (("mode", "sweep"),)
_ARRIVALS = (("mode", ("open", "sweep")),)      # open-loop arrivals: a rate, or a sweep
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
_CALL = Section(make_workload, _CALL_FIELDS)       # one call: an embed or a stream request
_WORKLOAD = Section(make_workload, (
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
    if values["mode"] == "sweep" and values["rate_min"] >= values["rate_max"]:
        raise Invalid(join(path, "rate_max"), f"must be above rate_min "
                                              f"({values['rate_min']:g}), got "
                                              f"{values['rate_max']:g}")
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
    Field("mode", choice("closed", "open", "sweep"), "closed"),
    Field("concurrency", points(integer(1, MAX_CONCURRENCY),
                                f"an integer in 1..{MAX_CONCURRENCY}"), 1, _CLOSED),
    Field("rate", points(number(0, lo_open=True), "a number > 0"), REQUIRED, _OPEN),
    Field("arrival", choice("poisson", "constant", "gamma"), "poisson", _ARRIVALS),
    Field("gamma_shape", number(0, lo_open=True), 0.5, _ARRIVALS + (("arrival", "gamma"),)),
    Field("max_in_flight", integer(1), 1024, _ARRIVALS),
    # sweep: the highest open-loop rate that keeps the SLO, by bisection (run/sweep.py)
    Field("rate_min", number(0, lo_open=True), REQUIRED, _SWEEP),
    Field("rate_max", number(0, lo_open=True), REQUIRED, _SWEEP),
    Field("steps", integer(2, 30), 8, _SWEEP),
    Field("tolerance", number(0, 1, lo_open=True), 0.1, _SWEEP),
    Field("goodput", number(0, 1, lo_open=True), 0.99, _SWEEP),
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


def _cors(v: Any, path: str) -> str:
    """The servers' --cors value: "*", an origin, or a list of origins (normalised)."""
    from servers.cors import parse_origins

    text = ",".join(v) if isinstance(v, list) and all(isinstance(o, str) for o in v) else v
    if not isinstance(text, str):
        raise Invalid(path, f'expected "*" or origins such as "http://localhost:8000", '
                            f"got {show(v)}")
    try:
        return ",".join(parse_origins(text))
    except ValueError as exc:
        raise Invalid(path, str(exc)) from None


# SLO metrics are per request: its latency, first token, mean time per output token and
# its largest gap between tokens; (unit kind, needs a stream workload).
SLO_METRICS = {"latency": ("time", False), "ttft": ("time", True), "tpot": ("time", True),
               "itl": ("time", True)}


def _slo(v: Any, path: str) -> tuple[Threshold, ...]:
    """`slo: ["latency < 50ms", "ttft < 200ms"]`: limits every request must keep."""
    out = []
    for raw, where in items(v, path, 'a list of strings such as "latency < 50ms"'):
        match = _THRESHOLD_RE.fullmatch(raw) if isinstance(raw, str) else None
        if match is None or match.group(2) not in ("<", "<="):
            raise Invalid(where, f'expected "metric < value[unit]" such as "ttft < 200ms", '
                                 f"got {show(raw)}")
        metric, op, number, unit = match.groups()
        if metric not in SLO_METRICS:
            raise Invalid(where, f"unknown SLO metric {show(metric)}; known: "
                                 f"{', '.join(SLO_METRICS)} (per request)")
        units = _UNITS["time"]
        if unit not in units:
            raise Invalid(where, f"unit {show(unit)} does not fit {metric}; use us, ms or s")
        out.append(Threshold(metric, op, float(number) * units[unit], raw.strip()))
    return tuple(out)


def _thresholds(v: Any, path: str) -> tuple[Threshold, ...]:
    pairs = items(v, path, 'a list of strings such as "p99 < 200ms"')
    return tuple(_threshold(raw, where) for raw, where in pairs)
