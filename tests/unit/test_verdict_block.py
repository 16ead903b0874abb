"""The verdict block: intervals that cover what they claim, and verdicts that follow them."""

from __future__ import annotations

import random

from harness.measure.stats import Histogram
from harness.report.questions import verdict_lines


def test_the_median_interval_covers_the_true_median_about_95_percent_of_the_time():
    rng = random.Random(7)
    true_median_ms = 2.0 * 0.6931      # exponential, mean 2 ms
    trials, covered = 300, 0
    for _ in range(trials):
        h = Histogram()
        for _ in range(400):
            h.record_ns(int(rng.expovariate(1 / 2.0) * 1e6))
        lo, hi = h.quantile_interval_ms(0.5)
        covered += lo <= true_median_ms <= hi
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_the_interval_narrows_with_more_samples():
    rng = random.Random(1)
    widths = []
    for n in (100, 10_000):
        h = Histogram()
        for _ in range(n):
            h.record_ns(int(rng.gauss(5.0, 1.0) * 1e6))
        lo, hi = h.quantile_interval_ms(0.5)
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 5


def row(cell: str, p50: float, ci: tuple[float, float], *, c: int = 1, n: int = 1000,
        rps: float = 1000.0, repeats=None, bound: str | None = None, **extra) -> dict:
    return {"cell": cell, "workload": "embed", "mode": "closed", "concurrency": c, "n": n,
            "latency_p50_ms": p50, "latency_p50_ci_ms": list(ci),
            "latency_p50_per_repeat_ms": repeats, "throughput_rps": rps,
            "throughput_per_repeat_rps": None, "server_bound": bound, "client_bound": None,
            "failed": None, "payload_up_bytes": 100, "payload_down_bytes": 1000, **extra}


def test_apart_intervals_name_a_winner_with_the_margins_interval():
    lines = verdict_lines([row("grpc", 1.0, (0.9, 1.1)), row("rest-h1", 2.0, (1.8, 2.2))])
    latency = next(line for line in lines if line.startswith("Latency at c=1"))
    # margin 2.0x; its interval [1.8/1.1, 2.2/0.9]
    assert "grpc 1 ms, 2.00x [1.64-2.44] vs rest-h1: real" in latency


def test_overlapping_intervals_say_no_difference():
    lines = verdict_lines([row("grpc", 1.0, (0.9, 1.2)), row("ws", 1.1, (1.0, 1.3))])
    assert lines[0].startswith("Latency at c=1 (p50): no difference: grpc 1")


def test_repeats_widen_the_interval():
    # Sampling intervals apart, but the repeats overlap: no difference.
    a = row("grpc", 1.0, (0.98, 1.02), repeats=[0.9, 1.0, 1.4])
    b = row("ws", 1.2, (1.18, 1.22), repeats=[1.1, 1.2, 1.3])
    assert "no difference" in verdict_lines([a, b])[0]


def test_a_saturated_row_never_wins_and_is_named():
    lines = verdict_lines([row("rest-h3", 0.5, (0.4, 0.6), bound="server at 99%"),
                           row("grpc", 1.0, (0.9, 1.1)), row("ws", 2.0, (1.9, 2.1))])
    assert lines[0].startswith("Latency at c=1 (p50): grpc")
    assert "excluded (saturated/failed): rest-h3" in lines[0]


def test_one_unsaturated_row_is_not_ranked():
    lines = verdict_lines([row("rest-h3", 0.5, (0.4, 0.6), bound="server at 99%"),
                           row("grpc", 1.0, (0.9, 1.1))])
    assert "not ranked (only grpc unsaturated; excluded: rest-h3)" in lines[0]


def test_throughput_is_judged_at_the_top_load_and_small_n_is_a_caveat():
    rows = [row("grpc", 1.0, (0.9, 1.1)), row("ws", 2.0, (1.9, 2.1)),
            row("grpc", 3.0, (2.9, 3.1), c=8, n=50, rps=2000.0),
            row("ws", 4.0, (3.9, 4.1), c=8, n=50, rps=1900.0)]
    line = next(x for x in verdict_lines(rows) if x.startswith("Throughput"))
    assert line.startswith("Throughput at c=8: no difference") and "n=50" in line


def test_a_resolved_margin_under_one_percent_keeps_its_digits_and_says_it_is_small():
    lines = verdict_lines([row("sse-h1", 50.40, (50.38, 50.42)),
                           row("ws", 50.60, (50.58, 50.62))])
    latency = next(line for line in lines if line.startswith("Latency at c=1"))
    assert "1.004x [1.003-1.005]" in latency and "small in practice" in latency


def test_bytes_answer_never_ranks_a_saturated_row():
    rows = [row("grpc", 1.0, (0.9, 1.1), bound="grpc[1] used 97% of a core",
                wire_up_bytes=300, wire_down_bytes=6_000),
            row("rest-h1", 1.2, (1.1, 1.3), wire_up_bytes=500, wire_down_bytes=20_000),
            row("ws", 1.3, (1.2, 1.4), wire_up_bytes=400, wire_down_bytes=21_000)]
    line = next(line for line in verdict_lines(rows) if line.startswith("Bytes"))
    assert line.startswith("Bytes per embed request (wire, up + down): rest-h1 20,500 B, 1.04x fewer "
                           "than ws")
    assert "excluded (saturated/failed): grpc" in line


def test_no_unsaturated_row_reads_as_such():
    lines = verdict_lines([row("rest-h3", 0.5, (0.4, 0.6), bound="server at 99%"),
                           row("grpc", 1.0, (0.9, 1.1), bound="server at 97%")])
    assert "not ranked (no row unsaturated; excluded: rest-h3, grpc)" in lines[0]


def test_a_median_at_the_recording_floor_keeps_its_rounding_in_the_interval():
    # Sub-microsecond gaps (tokens parsed from one read) are recorded as 1 us: the true
    # median is anything under 1.5 us, so the interval must reach 0 and 1.5 us.
    h = Histogram()
    for ns in [300, 800, 1_200] * 200:
        h.record_ns(ns)
    lo, hi = h.quantile_interval_ms(0.5)
    assert lo == 0.0 and hi == 0.0015


def test_a_winner_at_the_recording_floor_gets_a_lower_bound_not_a_ratio():
    fast = {**row("ws-stream", 0.0, (0, 0)), "workload": "stream", "itl_p50_ms": 0.001,
            "itl_p50_ci_ms": [0.0, 0.0015], "ttft_p50_ms": None}
    slow = {**row("sse-h1", 0.0, (0, 0)), "workload": "stream", "itl_p50_ms": 0.012,
            "itl_p50_ci_ms": [0.0115, 0.0135], "ttft_p50_ms": None}
    itl = next(line for line in verdict_lines([fast, slow]) if line.startswith("ITL"))
    # 0.0115 / 0.0015: at least 7.7x; no upper bound, so no "12.00x"
    assert "ws-stream 0.001 ms, at least 7.7x below sse-h1: real" in itl
    assert "12.00x" not in itl


def test_a_winner_near_saturation_carries_a_caveat_naming_the_busy_process():
    busy = row("grpc", 1.0, (0.9, 1.1), client_core_util=0.3,
               server_core_util={"python[7]": {"busiest_thread": 0.8}})
    latency = verdict_lines([busy, row("rest-h1", 2.0, (1.8, 2.2))])[0]
    assert "grpc near saturation: python[7] (server) 80% of a core" in latency
    calm = verdict_lines([row("grpc", 1.0, (0.9, 1.1), client_core_util=0.6),
                          row("rest-h1", 2.0, (1.8, 2.2))])[0]
    assert "near saturation" not in calm


def test_bytes_within_one_percent_are_no_difference_and_a_payload_row_is_named():
    # scale-out.yaml: rest-h1 28,082 B against rest-h2 28,1xx B read "1.00x fewer", and
    # grpc (payload only, its wire unmeasured) vanished from the line.
    rows = [row("rest-h1", 1.0, (0.9, 1.1), wire_up_bytes=1_655, wire_down_bytes=26_427),
            row("rest-h2", 1.2, (1.1, 1.3), wire_up_bytes=1_700, wire_down_bytes=26_429),
            row("grpc", 1.3, (1.2, 1.4), payload_down_bytes=8_267)]
    line = next(line for line in verdict_lines(rows) if line.startswith("Bytes"))
    assert "rest-h1 28,082 B and rest-h2 28,129 B, within 1%: no difference" in line
    assert "1.00x" not in line
    assert "wire not measured, so not ranked: grpc" in line
