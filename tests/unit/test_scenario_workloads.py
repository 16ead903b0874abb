"""A scenario with an embed and a stream workload: each protocol runs its own kind."""

import pytest

from harness.scenario import ScenarioError, load_scenario, parse_scenario, quick
from harness.report.verdict import check

BOTH = [{"type": "embed", "dimensions": 8}, {"type": "stream", "max_tokens": 40}]


def scenario(**overrides):
    data = {"name": "t", "workload": BOTH, "load": {}, "protocols": ["rest-h1", "sse-h1"]}
    data.update(overrides)
    return parse_scenario(data, "s.yaml")


def test_each_protocol_runs_the_workload_of_its_kind():
    s = scenario()
    assert s.workload_types == ("embed", "stream")
    assert s.workload_for("rest-h1").dimensions == 8
    assert s.workload_for("sse-h1@granian").max_tokens == 40
    assert s.workload.type == "embed"              # the first, for single-workload readers


def test_groups_take_both_kinds_and_to_dict_round_trips():
    s = scenario(protocols="all")
    assert "rest-h1" in s.protocols and "sse-h3" in s.protocols
    assert parse_scenario(s.to_dict()) == s
    assert s.to_dict()["workload"][1]["type"] == "stream"


def test_quick_shortens_the_stream_workload_only():
    q = quick(scenario())
    assert q.workload_for("sse-h1").max_tokens == 16
    assert q.workload_for("rest-h1").dimensions == 8


@pytest.mark.parametrize("workload, protocols, field, fragment", [
    ([BOTH[0], BOTH[0]], ["rest-h1"], "workload[1].type", "at most one embed"),
    ([], ["rest-h1"], "workload", "got []"),
    ([BOTH[0]], ["sse-h1"], "protocols[0]", "cannot run a embed workload"),
    ([BOTH[0], {"type": "stream", "batch_size": 2}], ["rest-h1"], "workload[1].batch_size",
     "only allowed"),
])
def test_errors_name_the_field(workload, protocols, field, fragment):
    with pytest.raises(ScenarioError) as info:
        scenario(workload=workload, protocols=protocols)
    assert info.value.field == field, str(info.value)
    assert fragment in info.value.message, str(info.value)


def test_stream_thresholds_apply_to_stream_rows_only():
    s = scenario(thresholds=["ttft_p99 < 100ms"])
    rows = [{"cell": "rest-h1", "mode": "closed", "concurrency": 1, "workload": "embed",
             "error_rate": 0.0, "errors_by_class": {}, "ttft_p99_ms": None},
            {"cell": "sse-h1", "mode": "closed", "concurrency": 1, "workload": "stream",
             "error_rate": 0.0, "errors_by_class": {}, "ttft_p99_ms": 50.0}]
    lines, failed, over = check(s, rows)
    assert failed == [] and over == [] and len(lines) == 1 and "sse-h1" in lines[0]


def test_protocol_vs_library_has_both_halves():
    s = load_scenario("scenarios/protocol_vs_library.yaml")
    assert s.workload_types == ("embed", "stream")
    assert {"rest-h2@granian", "sse-h2@granian", "rest-h3+curl", "sse-h3+curl"} <= set(s.protocols)
