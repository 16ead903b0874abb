"""benchmarks/fidelity.py judges issue 13's floor pair by pair: on this machine one
native-harness pair's ratio moves by as much as the clients differ, so a median alone
would call a coin toss "missed" or "met"."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    from fidelity_measure import Run
    from fidelity_report import Point, _floor_text, floor_verdict
    from fidelity_tools import cell_label, engine_field
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def run(tool: str, rps: float, p50_ms: float, errors: int = 0) -> Run:
    return Run(tool, rps, p50_ms, int(rps * 3), 3.0, errors, 50.0, 0.2, 400.0, 0.9,
               0.2, 0.9, 0.2, 1.1, 0.0, extra={"last_byte_p50_ms": p50_ms})


def point(pairs: list[tuple[float, float]], errors: int = 0) -> dict:
    """A c=1 point whose harness ran at (req/s ratio, p50 ratio) of wrk in each pair."""
    p = Point("caddy-http/1.1", "small", 1, engine="curl", client="rest-h1")
    for rps, p50 in pairs:
        p.native.append(run("wrk", 2000.0, 0.400))
        p.harness.append(run("harness", 2000.0 * rps, 0.400 * p50, errors))
    return p.summary()


def test_every_pair_clearing_both_bars_is_met():
    s = point([(0.97, 1.01), (0.96, 1.04), (1.02, 0.99)])
    assert s["floor_verdict"] == "met" and _floor_text(s) == "met (every pair)"


def test_no_pair_clearing_is_missed_with_the_range():
    s = point([(0.85, 1.10), (0.90, 1.02), (0.93, 1.04)])
    assert s["floor_verdict"] == "missed"
    assert _floor_text(s) == "missed: req/s 0.900x [0.850-0.930], p50 1.040x [1.020-1.100]"


def test_each_pair_missing_a_different_bar_is_still_missed():
    assert floor_verdict([(0.90, 1.00), (0.99, 1.20)], errors=0) == "missed"


def test_pairs_on_both_sides_are_undecided():
    s = point([(0.92, 1.03), (0.97, 1.01), (0.96, 1.02)])
    assert s["floor_verdict"] == "undecided"
    # the median clears req/s, yet one pair did not: the range says so
    assert _floor_text(s) == "undecided: req/s 0.960x [0.920-0.970]"


def test_errors_miss_the_floor_whatever_the_ratios():
    s = point([(1.0, 1.0), (1.0, 1.0)], errors=2)
    assert s["floor_verdict"] == "missed" and _floor_text(s).endswith("errors")


def test_a_slowed_native_tool_is_a_comparator_not_an_engine():
    assert engine_field("native+30") == {}          # nothing for the harness's LoadJob
    assert cell_label("rest-h1", "native+30") == "native +30 us"
    for bad in ("native", "native+", "native+x", "native+30us"):
        with pytest.raises(SystemExit, match="native\\+N"):
            engine_field(bad)
