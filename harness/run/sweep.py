"""Capacity within the SLO: the highest open-loop rate a cell serves while keeping it.

A `load: {mode: sweep}` scenario probes each cell at open-loop rates chosen as it goes:
rate_min first (if even that misses the SLO, the capacity is below the range), then
rate_max (if that keeps it, the capacity is at least rate_max), then the geometric
middle of the bracket [highest passing, lowest failing] until the bracket is within
`tolerance` or `steps` probes are spent. A probe passes when its goodput (the share of
its requests, errors included, that kept every SLO limit) reaches `goodput` and its
error rate is within the scenario's limit. A probe at which the load generator could
not keep the offered rate (its client core saturated, or its requests starting late:
harness.measure.saturation) tells nothing about the cell: the search goes on below it,
and a cell that never failed below it reads "at least X", the client's ceiling named.
The search itself is pure (Bisection, judge); run_sweep drives the runner's points.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from harness.run.watchdog import PointFailed

@dataclass
class Probe:
    rate: float
    passed: bool
    goodput: float | None
    achieved_rps: float | None
    why: str = ""                # why it failed, or why the client was the limit
    client_bound: bool = False   # the load generator could not offer this rate


@dataclass
class Bisection:
    rate_min: float
    rate_max: float
    steps: int
    tolerance: float
    probes: list[Probe] = field(default_factory=list)

    @property
    def passing(self) -> float | None:
        return max((p.rate for p in self.probes if p.passed), default=None)

    @property
    def failing(self) -> float | None:
        return min((p.rate for p in self.probes if not p.passed and not p.client_bound),
                   default=None)

    @property
    def ceiling(self) -> float | None:
        """The lowest rate the client could not offer: nothing at or above it is known."""
        return min((p.rate for p in self.probes if p.client_bound), default=None)

    def next_rate(self) -> float | None:
        """The rate to probe next, or None when the search is over."""
        if len(self.probes) >= self.steps:
            return None
        if not self.probes:
            return self.rate_min
        lo = self.passing
        if lo is None:                      # rate_min misses the SLO, or the client did
            return None
        tops = [r for r in (self.failing, self.ceiling) if r is not None]
        if not tops:
            return None if lo >= self.rate_max else self.rate_max
        hi = min(tops)
        if hi / lo <= 1 + self.tolerance:
            return None
        return math.sqrt(lo * hi)           # geometric: rates span orders of magnitude

    def record(self, probe: Probe) -> None:
        self.probes.append(probe)

    def result(self) -> dict[str, Any]:
        """One number per cell and how it is bounded, for summary.json and the report:
        `kind` is "bracketed" (a failing rate above it), "at least" (nothing above it
        failed: rate_max, or the client's own ceiling) or "below" (rate_min missed)."""
        lo, hi, ceiling = self.passing, self.failing, self.ceiling
        if lo is None:
            kind, why = "below", (f"the client could not offer {ceiling:g} req/s"
                                  if ceiling is not None and hi is None
                                  else f"rate_min {self.rate_min:g} req/s already misses "
                                       f"the SLO")
            verdict = f"below {self.rate_min:g} req/s ({why})"
        elif hi is not None and (ceiling is None or hi < ceiling):
            kind, verdict = "bracketed", f"between {lo:,.0f} and {hi:,.0f} req/s"
        elif ceiling is not None:
            kind = "at least"
            verdict = (f"at least {lo:,.0f} req/s: client bound at {ceiling:,.0f} req/s "
                       f"(the load generator's limit, not the cell's)")
        else:
            kind, verdict = "at least", f"at least {lo:,.0f} req/s (rate_max kept the SLO)"
        return {"capacity_rps": lo, "kind": kind, "bracket_rps": [lo, hi],
                "client_ceiling_rps": ceiling, "verdict": verdict,
                "probes": [vars(p) for p in self.probes]}


def judge(row: dict[str, Any], goodput: float, max_error_rate: float) -> Probe:
    """A probe from its measured row: passed, failed, or the client was the limit
    (then nothing is known at this rate)."""
    rate = row.get("rate_offered_rps") or 0.0
    fraction = row.get("goodput_fraction")
    why = ""
    if row.get("failed"):
        why = f"point failed: {str(row['failed']).splitlines()[0]}"
    elif row.get("error_rate", 0) > max_error_rate:
        why = f"error rate {row['error_rate']:.1%}"
    elif fraction is None or fraction < goodput:
        why = f"goodput {0 if fraction is None else fraction:.1%} < {goodput:.0%}"
    # Its core saturated or its requests started late (harness.measure.saturation).
    bound = row.get("client_bound") or ""
    return Probe(rate, not why and not bound, fraction, row.get("throughput_rps"),
                 bound or why, bool(bound))


def cell_label(point: Any) -> str:
    """The swept cell, with the connection policy / TLS version it runs here."""
    conn = f" conn={point.connection.label}" if point.connection is not None else ""
    tls = f" tls{point.tls_version}" if point.tls_version else ""
    return f"{point.protocol}{conn}{tls}"


def run_sweep(runner: Any, point: Any) -> None:
    """One cell's search: open-loop probes at the rates the bisection picks, each run
    and saved as a normal row (marked `sweep_probe`); the result goes into summary.json's
    `capacity` after every probe, so an interrupted sweep keeps what it found."""
    load = runner.s.load
    search = Bisection(load.rate_min, load.rate_max, load.steps, load.tolerance)
    workload = runner.s.workload_for(point.protocol).type
    while (rate := search.next_rate()) is not None:
        probe = dataclasses.replace(point, load_kind="open", rate=rate)
        try:
            runner.run_point(probe)
        except PointFailed as exc:
            runner._point_failed(probe, exc)
        label = runner._key(probe).label
        runner.sweep_probes.add(label)
        result = judge(runner.points[label].row(workload), load.goodput,
                       runner.s.max_error_rate)
        search.record(result)
        said = ("keeps the SLO" if result.passed else f"client bound: {result.why}"
                if result.client_bound else f"misses: {result.why}")
        runner.progress.note(f"sweep {cell_label(point)}: {rate:,.0f} req/s {said}")
        runner.writer.meta.setdefault("capacity", {})[cell_label(point)] = search.result()
        runner.save()
