"""Load workers on a real Ray cluster on this machine: a head and two worker nodes
started with `ray start`, the scale-out scenario run on it, and the merged result
checked against the workers' own counts and against a one-host run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.test_bench_cli import (bench_env, interrupt_after_a_row, result_dir,
                                              run_bench, write)

SCENARIO = """
name: scale-out-test
workload: {type: embed, batch_size: 2, dimensions: 32}
protocols: [rest-h1, grpc]
load: {mode: closed, concurrency: 6, requests: 600}
warmup: {requests: 6}
%s
"""
ENV = {"RAY_AUTH_MODE": "disabled"}     # a throwaway local cluster: no token to share


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head plus two worker nodes, one CPU each; stopped (every Ray process) after."""
    pytest.importorskip("ray")          # the `test` extra installs it; say so if not
    tmp = tmp_path_factory.mktemp("ray")
    port = free_port()
    env = {**os.environ, **ENV}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run(["ray", "start", "--head", f"--port={port}", f"--temp-dir={tmp}",
                        "--include-dashboard=false", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        for _ in range(2):
            subprocess.run(["ray", "start", f"--address=127.0.0.1:{port}", *common],
                           env=env, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def run(tmp_path: Path, name: str, cluster_block: str, *extra: str) -> dict:
    out = tmp_path / name
    path = write(tmp_path / f"{name}.yaml", SCENARIO % cluster_block)
    os.environ.update(ENV)
    done = run_bench([path, "--out", out, "--loopback", *extra], tmp_path / "tls", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((result_dir(out) / "summary.json").read_text())


def test_workers_on_three_nodes_merge_like_local_workers(cluster, tmp_path):
    on_ray = run(tmp_path, "ray", "cluster: {engine: ray, address: auto, workers: 3}",
                 "--cluster", cluster)
    workers = on_ray["cluster"]["workers"]
    assert len(workers) == 3
    assert len({w["node"].split()[0] for w in workers}) == 3         # one per node
    rows = {r["cell"]: r for r in on_ray["rows"]}
    assert all(r["n"] == 600 and r["errors"] == 0 for r in rows.values())
    # The merged counts are the sum of what each worker measured.
    assert sum(w["requests"] for w in workers) == sum(r["n"] for r in rows.values())
    assert all(abs(w["offset_ms"]) < 50 for w in workers)           # one host's clock
    assert "kept" in on_ray["cluster"]["one_way_delay"]
    # The same load from local worker processes: percentiles agree within noise.
    local = {r["cell"]: r for r in run(tmp_path, "local", "workers: 3")["rows"]}
    for cell, r in rows.items():
        ratio = r["latency_p50_ms"] / local[cell]["latency_p50_ms"]
        assert 0.4 < ratio < 2.5, (cell, r["latency_p50_ms"], local[cell]["latency_p50_ms"])


def test_a_cluster_without_ray_is_refused_in_words(tmp_path, monkeypatch):
    import importlib.util

    from harness.scenario import parse_scenario
    from harness.scenario.model import ScenarioError
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ScenarioError, match=r"pip install -e '.\[cluster\]'"):
        parse_scenario({"name": "s", "workload": {"type": "embed"}, "load": {},
                        "cluster": {"engine": "ray"}})


def test_more_workers_than_cluster_cpus_fail_at_once_naming_both(cluster, tmp_path):
    # The fixture's cluster has 3 CPUs. A fourth actor could never be placed, and
    # ray.get on it used to wait for ever.
    out = tmp_path / "out"
    path = write(tmp_path / "four.yaml", SCENARIO % "cluster: {engine: ray, workers: 4}")
    os.environ.update(ENV)
    started = time.monotonic()
    done = run_bench([path, "--out", out, "--loopback", "--cluster", cluster],
                     tmp_path / "tls", timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert time.monotonic() - started < 60
    assert "4 workers need a CPU each and the cluster has 3" in done.stderr
    summary = json.loads((result_dir(out) / "summary.json").read_text())
    assert summary["status"] == "failed" and "cluster has 3" in summary["failure"]
    report = (result_dir(out) / "report.md").read_text()
    assert "The run failed: cluster " in report and "cluster has 3" in report


def test_sigterm_on_a_ray_run_still_cleans_up_and_keeps_its_rows(cluster, tmp_path):
    # Ray's init installs its own SIGTERM handling (a process exit with no cleanup): the
    # runner's must be back in place, so servers stop and the summary says "aborted".
    long = SCENARIO.replace("requests: 600", "duration_s: 3").replace(
        "concurrency: 6", "concurrency: 3") % "cluster: {engine: ray, workers: 3}"
    path, out, tag = write(tmp_path / "long.yaml", long), tmp_path / "out", uuid.uuid4().hex
    code, output, _ = interrupt_after_a_row(
        [path, "--out", out, "--loopback", "--cluster", cluster],
        {**bench_env(tmp_path / "tls", tag), **ENV}, tag, out, tmp_path / "bench.log",
        signal.SIGTERM, wait_s=90)
    assert code == 130, output[-3000:]
    summary = json.loads((result_dir(out) / "summary.json").read_text())
    assert summary["status"] == "aborted", output[-3000:]
    assert summary["rows"] and all(r["n"] > 0 for r in summary["rows"])
