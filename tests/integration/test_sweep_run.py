"""A real (tiny) capacity sweep end to end: every probe kept as a row, and the capacity
consistent with its probes."""

from __future__ import annotations

import json

from tests.integration.test_bench_cli import result_dir, run_bench, tls_dir, write  # noqa: F401

SCENARIO = """
name: tiny-sweep
workload: {type: embed, batch_size: 1, dimensions: 8}
protocols: [rest-h1]
slo: ["latency < 500ms"]
load: {mode: sweep, rate_min: 20, rate_max: 80, steps: 3, tolerance: 0.1, duration_s: 0.6}
warmup: {requests: 3}
"""


def test_a_sweep_keeps_every_probe_and_reports_a_capacity_its_probes_support(tmp_path,
                                                                               tls_dir):
    out = tmp_path / "out"
    done = run_bench([write(tmp_path / "s.yaml", SCENARIO), "--out", out, "--loopback"],
                     tls_dir, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sweep rest-h1: 20 req/s keeps the SLO" in done.stderr
    summary = json.loads((result_dir(out) / "summary.json").read_text())
    probes = [r for r in summary["rows"] if r.get("sweep_probe")]
    result = summary["capacity"]["rest-h1"]
    assert sorted(r["rate_offered_rps"] for r in probes) == \
        sorted(p["rate"] for p in result["probes"])
    assert all(r["n"] > 0 and r["goodput_fraction"] is not None for r in probes)
    passed = [p["rate"] for p in result["probes"] if p["passed"]]
    assert result["capacity_rps"] == max(passed)
    assert result["kind"] in ("at least", "bracketed")
    report = (result_dir(out) / "report.md").read_text()
    assert "## Capacity within the SLO" in report and "| rest-h1 |" in report
