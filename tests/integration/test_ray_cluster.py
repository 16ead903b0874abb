"""Load workers on a real Ray cluster on this machine: a head and two worker nodes
started with `ray start`, the scale-out scenario run on it, and the merged result
checked against the workers' own counts and against a one-host run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_bench_cli import result_dir, run_bench, write

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
