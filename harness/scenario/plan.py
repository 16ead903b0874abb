"""Scenarios derived from a scenario (--quick, --protocols) and its expanded run plan:
one point per protocol x load x connection/TLS/DNS/resumption choice x repeat."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from base.cells import parse_cell
from harness.scenario.groups import restrict
from harness.scenario.model import (
    Connection,
    Load,
    PlanPoint,
    Scenario,
    ScenarioError,
    Warmup,
    Workload,
    _multiplexed,
)
from harness.scenario.schema import (
    show,
)

# --------------------------------------------------------------------------- derived scenarios

def _ends(points: tuple | None) -> tuple | None:
    return None if points is None else tuple(dict.fromkeys((points[0], points[-1])))


def quick(scenario: Scenario) -> Scenario:
    """A fast smoke version: both ends of the sweep, few requests, one repeat/worker."""
    s, load = scenario, scenario.load
    load = dataclasses.replace(
        load, concurrency=_ends(load.concurrency), rate=_ends(load.rate),
        requests=30 if load.requests is None else min(load.requests, 30), duration_s=None,
        steps=None if load.steps is None else min(load.steps, 4))
    if load.mode == "sweep":       # a probe needs time for a queue to build, not a count
        load = dataclasses.replace(load, requests=None, duration_s=1.0)
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
