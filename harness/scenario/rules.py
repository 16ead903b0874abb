"""Rules across sections (a stream workload needs streaming protocols, ...), and the
scenario's top-level field table that runs them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from base.cells import parse_cell
from base.protocols import PROTOCOLS, STREAM_OF, UNARY
from harness.scenario.fields import (
    _CONNECTION,
    _DNS,
    _LOAD,
    _TARGET,
    METRICS,
    SLO_METRICS,
    PROTOCOL_GROUPS,
    TARGET_PROTOCOLS,
    _cell,
    _cors,
    _slo,
    _protocols,
    _resumption,
    _thresholds,
    _tls_version,
    _workloads,
)
from harness.scenario.groups import check_groups, parse_groups
from harness.scenario.model import _TLS_MODES, Outputs, Scenario, Warmup
from harness.scenario.network import network_section
from harness.scenario.plan import _resumption_support
from harness.scenario.cluster import CLUSTER, check_cluster
from harness.scenario.remote import REMOTE, check_remote
from harness.scenario.schema import (
    Field,
    Invalid,
    Section,
    boolean,
    integer,
    number,
    optional,
    show,
    string,
    sweep,
)

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


def _check_slo(values: dict) -> None:
    if values["load"].mode == "sweep":
        if not values["slo"]:
            raise Invalid("slo", 'load.mode "sweep" looks for the highest rate that keeps '
                                 'the SLO: give one, e.g. slo: ["p99 < 50ms"]')
        if values["repeats"] != 1:
            raise Invalid("repeats", 'a sweep (load.mode "sweep") runs one search per cell; '
                                     "set repeats: 1")
    streaming = {w.type for w in values["workloads"]} == {"stream"}
    for i, t in enumerate(values["slo"]):
        if SLO_METRICS[t.metric][1] and not streaming:
            raise Invalid(f"slo[{i}]", f"{t.metric} applies to stream workloads only")


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
        calls += [(f"workload.stages[{i}].", st.work)
                  for i, st in enumerate(getattr(w, "stages", None) or ())]
    for where, workload in calls:
        for key in ("compute_ms", "ttft_ms", "itl_ms"):
            if getattr(workload, key, None):
                raise Invalid(where + key, "simulated model time only applies to the "
                                           "built-in servers; remove it when target is set")
    if values["network"] is not None:
        raise Invalid("network", "the network lab runs the built-in servers behind an "
                                 "emulated link; remove target or network")
    if values["dns"] is not None:
        raise Invalid("dns", "the DNS step serves the built-in servers' name; an external "
                             "target is resolved by the system; remove target or dns")
    if values["cors"] is not None:
        raise Invalid("cors", "cors configures the built-in servers; remove target or cors")
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
    _check_slo(values)
    _check_target(values)
    _check_dns(values)
    _check_resumption(values)
    _check_browser(values)
    check_remote(values, lambda label: _tls_of(label, values["tls"]))
    check_cluster(values)


def _tls_of(label: str, tls: bool) -> bool:
    modes = _TLS_MODES[parse_cell(label).kind]
    return tls if tls in modes else modes[0]


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
    Field("cors", optional(_cors), None),
    Field("slo", _slo, []),
    Field("remote", optional(REMOTE), None),
    Field("cluster", optional(CLUSTER), None),
), post=_cross_checks)
