"""Is a change between two runs real? A noise model from the runs' own repeats.

Each run keeps, per row, every repeat's figure (p50 and p99 latency, TTFT, throughput).
The ratio B/A then lies in [min(B)/max(A), max(B)/min(A)]: when that interval excludes
1 the two runs' repeats do not overlap, and the change is called (better or worse, by
the metric's direction); when it contains 1 it is within noise. With one repeat on
either side the run-to-run spread is unknown and no verdict is given. Pure: values in,
verdicts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# (row field, per-repeat field, label, lower is better)
METRICS = (
    ("latency_p50_ms", "latency_p50_per_repeat_ms", "p50 ms", True),
    ("latency_p99_ms", "latency_p99_per_repeat_ms", "p99 ms", True),
    ("ttft_p50_ms", "ttft_p50_per_repeat_ms", "TTFT p50 ms", True),
    ("ttft_p99_ms", "ttft_p99_per_repeat_ms", "TTFT p99 ms", True),
    ("throughput_rps", "throughput_per_repeat_rps", "req/s", False),
)
WITHIN, BETTER, WORSE, UNKNOWN = "within noise", "better", "worse", "noise unknown"


@dataclass(frozen=True)
class Change:
    metric: str
    a: float
    b: float
    ratio: float                     # B / A
    low: float | None                # the ratio's interval from the repeats
    high: float | None
    verdict: str
    repeats: tuple[int, int]

    @property
    def percent(self) -> float:
        return (self.ratio - 1) * 100

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "a": self.a, "b": self.b, "ratio": round(self.ratio, 4),
                "low": None if self.low is None else round(self.low, 4),
                "high": None if self.high is None else round(self.high, 4),
                "verdict": self.verdict, "repeats": list(self.repeats)}


def change(label: str, a: float, b: float, a_repeats: list[float] | None,
           b_repeats: list[float] | None, lower_is_better: bool) -> Change | None:
    """One metric's change between two rows; None without both figures."""
    if a is None or b is None or a <= 0:
        return None
    ra = [v for v in (a_repeats or ()) if v is not None and v > 0]
    rb = [v for v in (b_repeats or ()) if v is not None]
    repeats = (len(ra), len(rb))
    if len(ra) < 2 or len(rb) < 2:
        return Change(label, a, b, b / a, None, None, UNKNOWN, repeats)
    low, high = min(rb) / max(ra), max(rb) / min(ra)
    if low > 1:
        verdict = WORSE if lower_is_better else BETTER
    elif high < 1:
        verdict = BETTER if lower_is_better else WORSE
    else:
        verdict = WITHIN
    return Change(label, a, b, b / a, low, high, verdict, repeats)


def row_changes(ra: dict[str, Any], rb: dict[str, Any]) -> list[Change]:
    """Every metric both rows have, as a Change."""
    out = []
    for field, per_repeat, label, lower in METRICS:
        c = change(label, ra.get(field), rb.get(field), ra.get(per_repeat), rb.get(per_repeat),
                   lower)
        if c is not None:
            out.append(c)
    return out


def regressions(changes: list[Change], percent: float) -> list[Change]:
    """Changes called worse by at least `percent` (in the metric's bad direction)."""
    return [c for c in changes if c.verdict == WORSE and abs(c.percent) >= percent]
