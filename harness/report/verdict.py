"""Thresholds and the error limit, checked against every result row."""

from __future__ import annotations

import math
from typing import Any

from harness.report.tables import point_load
from harness.scenario import METRICS, Scenario

# threshold metric -> row field (latency-like fields are in ms, as thresholds are)
_FIELDS = {"p50": "latency_p50_ms", "p90": "latency_p90_ms", "p95": "latency_p95_ms",
           "p99": "latency_p99_ms", "p999": "latency_p999_ms", "max": "latency_max_ms",
           "error_rate": "error_rate", "throughput": "throughput_rps",
           "ttft_p50": "ttft_p50_ms", "ttft_p99": "ttft_p99_ms", "itl_p99": "itl_p99_ms"}


def _value(row: dict[str, Any], metric: str) -> float:
    if metric == "mean":
        lat = row.get("latency_ms") or {}
        v = lat.get("mean")
    else:
        v = row.get(_FIELDS[metric])
    return math.nan if v is None else float(v)


def _label(row: dict[str, Any]) -> str:
    return f"{row['cell']} {point_load(row)}"


def check(scenario: Scenario, rows: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """(lines for the report, threshold failures, error-limit failures)."""
    lines, failed, over = [], [], []
    for row in rows:
        if row["error_rate"] > scenario.max_error_rate:
            over.append(f"{_label(row)}: error rate {row['error_rate']:.2%} exceeds "
                        f"max_error_rate {scenario.max_error_rate:.2%} "
                        f"({row['errors_by_class']})")
        for t in scenario.thresholds:
            if METRICS[t.metric][1] and row["workload"] != "stream":
                continue          # a stream metric says nothing about a unary row
            value = _value(row, t.metric)
            ok = t.check(value)
            text = f"{_label(row)}: `{t.text}` -> measured {value:g}: {'pass' if ok else 'FAIL'}"
            lines.append(f"- {text}")
            if not ok:
                failed.append(text)
    return lines, failed, over
