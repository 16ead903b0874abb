"""The capacity search: bisection on the offered rate, judged from measured rows."""

from __future__ import annotations

import pytest

from harness.run.sweep import Bisection, Probe, judge
from harness.scenario import parse_scenario
from harness.scenario.model import ScenarioError


def search(capacity: float, *, client_ceiling: float = float("inf"), steps: int = 12,
           lo: float = 10, hi: float = 10_000, tolerance: float = 0.05) -> Bisection:
    """Run the search against a cell that keeps the SLO up to `capacity` req/s."""
    b = Bisection(lo, hi, steps, tolerance)
    while (rate := b.next_rate()) is not None:
        bound = rate >= client_ceiling
        b.record(Probe(rate, rate <= capacity and not bound, None, None, "", bound))
    return b


def test_the_bracket_closes_on_the_capacity_within_the_tolerance():
    b = search(830.0)
    r = b.result()
    pass_, fail = r["bracket_rps"]
    assert r["kind"] == "bracketed" and pass_ <= 830 < fail and fail / pass_ <= 1.05
    assert r["capacity_rps"] == pass_
    assert [p.rate for p in b.probes][:2] == [10, 10_000]     # both ends first


def test_the_step_budget_bounds_the_search():
    b = search(830.0, steps=4)
    assert len(b.probes) == 4 and b.result()["kind"] == "bracketed"


def test_a_cell_that_misses_at_rate_min_is_below_the_range():
    r = search(5.0).result()
    assert r["kind"] == "below" and r["capacity_rps"] is None and len(r["probes"]) == 1


def test_a_cell_that_keeps_the_slo_at_rate_max_is_at_least_rate_max():
    r = search(1e9).result()
    assert r["kind"] == "at least" and r["capacity_rps"] == 10_000 and len(r["probes"]) == 2


def test_a_client_bound_probe_is_a_ceiling_never_a_capacity():
    b = search(1e9, client_ceiling=700.0)
    r = b.result()
    assert r["kind"] == "at least" and r["client_ceiling_rps"] >= 700
    assert r["capacity_rps"] < 700 and "client bound" in r["verdict"]
    # A failure below the client's ceiling still brackets the cell's capacity.
    r = search(300.0, client_ceiling=700.0).result()
    assert r["kind"] == "bracketed" and r["capacity_rps"] <= 300 < r["bracket_rps"][1]


def row(**kw) -> dict:
    return {"rate_offered_rps": 500.0, "throughput_rps": 498.0, "goodput_fraction": 0.995,
            "error_rate": 0.0, "failed": None, "client_bound": "", **kw}


@pytest.mark.parametrize("kw,passed,bound", [
    ({}, True, False),
    ({"goodput_fraction": 0.9}, False, False),
    ({"error_rate": 0.05}, False, False),
    ({"failed": "worker died"}, False, False),
    ({"client_bound": "120 of 1000 requests started late"}, False, True),
])
def test_a_probe_is_judged_from_its_row(kw, passed, bound):
    probe = judge(row(**kw), goodput=0.99, max_error_rate=0.01)
    assert (probe.passed, probe.client_bound) == (passed, bound)
    assert probe.passed or probe.why


BASE = {"name": "s", "workload": {"type": "embed"}, "slo": ["latency < 20ms"],
        "load": {"mode": "sweep", "rate_min": 10, "rate_max": 100, "duration_s": 1}}


@pytest.mark.parametrize("change,field,words", [
    ({"slo": []}, "slo", "give one"),
    ({"repeats": 2}, "repeats", "repeats: 1"),
    ({"load": {"mode": "sweep", "rate_min": 100, "rate_max": 10}}, "load.rate_max",
     "above rate_min"),
    ({"load": {"mode": "sweep", "rate_max": 10}}, "load.rate_min", "required"),
    ({"load": {"mode": "closed", "rate_min": 1}}, "load.rate_min", '"sweep"'),
])
def test_bad_sweep_scenarios_name_the_field(change, field, words):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario({**BASE, **change})
    assert field in str(exc.value) and words in str(exc.value)
