"""Pipeline workloads: the schema, and the split of a user request's time along its
critical path (pure: results built by hand, every number known)."""

import numpy as np
import pytest

from clients.base import StreamResult, StreamToken, UnaryResult
from harness.run.load.pipeline import BUCKETS, Pipeline, call_components
from harness.report.pipeline import render_pipeline_section
from harness.scenario import ScenarioError, parse_scenario, quick

MS = 1_000_000
STAGES = [{"name": "query", "call": "embed", "dimensions": 64, "batch_size": 1},
          {"name": "lookups", "call": "embed", "calls": 20, "parallel": 4, "compute_ms": 1},
          {"name": "answer", "call": "stream", "max_tokens": 8, "ttft_ms": 10}]


def scenario(stages=STAGES, **overrides):
    data = {"name": "p", "workload": {"type": "pipeline", "stages": stages},
            "load": {"requests": 2}}
    data.update(overrides)
    return parse_scenario(data, "p.yaml")


# ----------------------------------------------------------------------- schema

def test_a_pipeline_takes_the_unary_protocols_and_round_trips():
    s = scenario()
    assert s.protocols == ("rest-h1", "rest-h2", "rest-h3", "grpc", "ws")
    assert [st.name for st in s.workload.stages] == ["query", "lookups", "answer"]
    assert s.workload.stages[1].work.compute_ms == 1.0
    assert s.workload.stages[2].work.type == "stream"
    assert s.workload_for("grpc") is s.workload
    assert parse_scenario(s.to_dict(), "p.yaml") == s


def test_quick_keeps_two_rounds_of_each_fan_out():
    q = quick(scenario())
    assert [st.calls for st in q.workload.stages] == [1, 8, 1]


@pytest.mark.parametrize("stage, field, fragment", [
    ({"name": "q", "call": "embed", "max_tokens": 3}, "workload.stages[0].max_tokens",
     'workload.stages[0].call is "stream"'),
    ({"name": "q", "call": "poll"}, "workload.stages[0].call", '"embed", "stream"'),
    ({"name": "q", "call": "embed", "calls": 2, "parallel": 3},
     "workload.stages[0].parallel", "more than the stage's 2 calls"),
    ({"name": "q", "call": "embed", "fanout": 3}, "workload.stages[0].fanout", "unknown key"),
    ({"call": "embed"}, "workload.stages[0].name", "required"),
    ({"name": "Q!", "call": "embed"}, "workload.stages[0].name", "a-z"),
])
def test_bad_stages_are_refused_by_field(stage, field, fragment):
    with pytest.raises(ScenarioError) as err:
        scenario(stages=[stage])
    assert err.value.field == field and fragment in err.value.message


def test_streaming_protocols_duplicate_names_and_mixed_workloads_are_refused():
    with pytest.raises(ScenarioError, match="streaming protocol; a pipeline names"):
        scenario(protocols=["sse-h2"])
    with pytest.raises(ScenarioError, match="duplicate of workload.stages.0..name"):
        scenario(stages=[STAGES[0], STAGES[0]])
    with pytest.raises(ScenarioError, match="give it alone"):
        parse_scenario({"name": "p", "load": {}, "workload": [
            {"type": "pipeline", "stages": STAGES}, {"type": "embed"}]})
    with pytest.raises(ScenarioError, match="stages: required"):
        scenario(stages=None, workload={"type": "pipeline"})


# ----------------------------------------------------------------------- the split

def unary(start, *, dns=0, tcp=0, tls=0, sent, first, received, decoded, server_ms,
          new=True):
    """A unary call at `start` ms whose phase stamps are the given ms from its start."""
    t0 = start * MS
    r = UnaryResult(np.zeros((1, 1), np.float32), t0, t0 + first * MS, t0 + received * MS,
                    t0 + decoded * MS, 10, 20, server_ms * 1000, new)
    r.extra["phases"] = {"namelookup": dns * 1000, "connect": tcp * 1000,
                         "appconnect": tls * 1000, "pretransfer": sent * 1000,
                         "starttransfer": first * 1000, "total": received * 1000}
    return r


def test_a_cold_unary_call_splits_into_its_phases():
    r = unary(0, dns=20, tcp=40, tls=60, sent=60, first=95, received=100, decoded=101,
              server_ms=10)
    got = call_components(r)
    assert got == {"dns": 20 * MS, "tcp_handshake": 20 * MS, "tls_handshake": 20 * MS,
                   "round_trips": 25 * MS, "transfer": 5 * MS, "model": 10 * MS,
                   "client": 1 * MS}
    assert sum(got.values()) == r.latency_ns


def test_a_stream_call_counts_token_pacing_as_model_time():
    t0 = 5 * MS
    toks = [StreamToken(i, "x", None, t0 + (30 + 10 * i) * MS) for i in range(3)]
    r = StreamResult(toks, t0, t0 + 21 * MS, t0 + 52 * MS, 10, 30, server_time_us=50_000)
    r.extra["phases"] = {"namelookup": 0, "connect": 0, "appconnect": 0,
                         "pretransfer": 1000, "starttransfer": 21_000, "total": 52_000}
    got = call_components(r)
    assert got["model"] == 50 * MS and got["round_trips"] == 2 * MS
    assert got["transfer"] == 0 and sum(got.values()) == r.e2e_ns


def test_a_call_without_phase_stamps_is_unattributed():
    r = unary(0, sent=1, first=5, received=6, decoded=7, server_ms=3)
    del r.extra["phases"]
    assert call_components(r) == {"unattributed": 7 * MS}


def test_the_critical_path_follows_the_lane_that_ended_last():
    # Lane A: two warm calls 0-10 and 12-20; lane B: one call 1-30 (the critical lane).
    a1 = unary(0, sent=1, first=9, received=10, decoded=10, server_ms=5, new=False)
    a2 = unary(12, sent=1, first=7, received=8, decoded=8, server_ms=5, new=False)
    b1 = unary(1, sent=1, first=28, received=29, decoded=29, server_ms=20, new=False)
    b1.extra["returned_ns"] = 32 * MS       # closing its connection took 2 ms more
    comps = dict.fromkeys(BUCKETS, 0)
    Pipeline._critical_path([[a1, a2], [b1]], 0, 33 * MS, comps)
    assert sum(comps.values()) == 33 * MS
    assert comps["model"] == 20 * MS and comps["teardown"] == 2 * MS
    assert comps["round_trips"] == 8 * MS and comps["transfer"] == 1 * MS   # 28 - 20
    assert comps["client"] == 1 * MS + 1 * MS      # before b1 started, after it returned


def test_the_report_section_adds_up_and_names_the_saving_policy():
    def row(policy, dns_ms, e2e_ms):
        parts = {"dns": dns_ms, "tcp_handshake": 100.0, "round_trips": 50.0, "model": 300.0,
                 "client": e2e_ms - dns_ms - 450.0}
        if policy != "new":
            parts["tcp_handshake"] = 0.0
            parts["client"] += 100.0
        return {"cell": "rest-h1", "network": "rtt20", "connections_policy": policy,
                "dns_cache": None, "n": 3, "calls_per_request": 194,
                "latency_p50_ms": e2e_ms, "distributions_ms": {"e2e": {"mean": e2e_ms}},
                "pipeline_ms": parts, "pipeline_stages_ms": {"q": e2e_ms}}
    text = "\n".join(render_pipeline_section([row("new", 40.0, 1000.0),
                                              row("auto", 0.0, 500.0)]))
    assert "within 0.00% of the mean" in text
    assert "with new connection per call a user request takes 1.00 s" in text
    assert "with reused connections it takes 0.50 s (2.0x faster" in text
