"""A pipeline scenario end to end: `python bench.py` on loopback, real servers, real
sockets. Each user request's time split must add up, calls and connections must be
counted as the policy says, and the model time must be what the scenario asked for."""

from __future__ import annotations

import pytest

from tests.integration.test_bench_cli import run_bench, summary, tls_dir, write  # noqa: F401 (fixture)

PIPELINE = """\
name: pipe
workload:
  type: pipeline
  stages:
    - {name: query, call: embed, batch_size: 1, dimensions: 64, compute_ms: 8}
    - {name: lookups, call: embed, calls: 12, parallel: 4, batch_size: 1, dimensions: 16,
       compute_ms: 4}
    - {name: answer, call: stream, max_tokens: 5, ttft_ms: 20, itl_ms: 5}
protocols: [ws, grpc, rest-h1]
load: {requests: 3, timeout_s: 30}
warmup: {requests: 1}
connection: {policy: [new, reuse]}
"""
CALLS = 1 + 12 + 1
# Along the critical path: the query, 3 rounds of 4 lookups, the answer's TTFT and
# 4 token gaps; the server's own time is at least this.
MODEL_MS = 8 + 3 * 4 + 20 + 4 * 5


@pytest.fixture(scope="module")
def run(tmp_path_factory, tls_dir):
    tmp = tmp_path_factory.mktemp("pipeline")
    out = tmp / "out"
    proc = run_bench([write(tmp / "pipe.yaml", PIPELINE), "--out", out, "--loopback"],
                     tls_dir, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, {(r["cell"], r["connections_policy"]): r for r in summary(out)["rows"]}


@pytest.fixture(scope="module")
def rows(run):
    return run[1]


def test_the_terminal_says_which_policy_saves_what(run):
    out = run[0].stdout
    assert "Where a user request's seconds go" in out
    for cell in ("ws", "grpc", "rest-h1"):
        assert f"- {cell}, loopback: with new connection per call" in out, out[-3000:]


def test_every_family_and_policy_ran_every_call(rows):
    assert set(rows) == {(p, c) for p in ("ws", "grpc", "rest-h1") for c in ("new", "auto")}
    for (cell, policy), r in rows.items():
        assert r["workload"] == "pipeline" and r["n"] == 3 and r["errors"] == 0, r
        assert r["calls_per_request"] == CALLS
        # A new connection for each call, or none at all once the warmup opened them.
        assert r["new_connections"] == (3 * CALLS if policy == "new" else 0), (cell, policy)


def test_the_components_add_up_to_the_end_to_end_time(rows):
    for key, r in rows.items():
        parts, e2e = r["pipeline_ms"], r["distributions_ms"]["e2e"]["mean"]
        assert abs(sum(parts.values()) - e2e) <= 0.05 * e2e, (key, parts, e2e)
        assert sum(r["pipeline_stages_ms"].values()) <= e2e


@pytest.mark.parametrize("cell", ["ws", "grpc", "rest-h1"])
def test_phase_stamped_calls_leave_little_unexplained(rows, cell):
    for policy in ("new", "auto"):
        r = rows[(cell, policy)]
        parts, e2e = r["pipeline_ms"], r["distributions_ms"]["e2e"]["mean"]
        assert parts.get("unattributed", 0) == 0
        assert MODEL_MS <= parts["model"] <= MODEL_MS + 15, parts
        assert parts["client"] < 0.25 * e2e, parts
        if policy == "new":
            assert parts["tcp_handshake"] > 0, parts
        else:
            assert parts.get("tcp_handshake", 0) == 0 and parts.get("dns", 0) == 0, parts
