"""A figure's 95% interval, the one every "real gap" sentence of a report decides on.

A p50's interval comes from the merged histogram (order statistics,
harness.measure.stats), a throughput's from its request count (Poisson: rps x (1 +/-
1.96/sqrt(n))); with repeats each is widened to cover every repeat's own figure, since
run-to-run noise on a shared machine is larger than sampling noise. Two figures differ
only when their intervals do not overlap. The verdict block (questions.py) and the
conclusions (conclusion.py) both decide with these, so they cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

Row = dict[str, Any]


@dataclass(frozen=True)
class Estimate:
    row: Row
    value: float
    lo: float
    hi: float
    cell: str = ""           # the name shown (the cell, and its variant where needed)


def apart(a: Estimate, b: Estimate) -> bool:
    return a.hi < b.lo or b.hi < a.lo


def _widen(row: Row, value: float, lo: float, hi: float, per_repeat: str) -> Estimate:
    repeats = [v for v in (row.get(per_repeat) or ()) if v is not None]
    if len(repeats) >= 2:
        lo, hi = min(lo, *repeats), max(hi, *repeats)
    return Estimate(row, value, min(lo, value), max(hi, value), row["cell"])


def p50_estimate(metric: str, per_repeat: str | None) -> Callable[[Row], Estimate | None]:
    """For `metric` "latency" or "ttft": the row's p50 and its interval."""
    def estimate(row: Row) -> Estimate | None:
        value, ci = row.get(f"{metric}_p50_ms"), row.get(f"{metric}_p50_ci_ms")
        if value is None:
            return None
        lo, hi = ci if ci else (value, value)
        return _widen(row, value, lo, hi, per_repeat or "")
    return estimate


def throughput_estimate(row: Row) -> Estimate | None:
    rps, n = row.get("throughput_rps"), row.get("n")
    if not rps or not n:
        return None
    rel = 1.96 / math.sqrt(n)
    return _widen(row, rps, rps * (1 - rel), rps * (1 + rel), "throughput_per_repeat_rps")
