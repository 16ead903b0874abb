"""`python bench.py` with a `network:` scenario, end to end through the emulated link:
the packet log and token traces are kept, the head-of-line analysis lands in the rows
and the report, and nothing the lab made outlives the run. Also: a network scenario is
refused, with how to run it, where the lab cannot run, and other scenarios still run."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.measure.packetlog import read_csv
from tests.integration.test_bench_cli import ROOT, result_dir, run_bench, write

pytestmark = pytest.mark.network

LAB = """\
name: lab-mini
workload: {type: stream, max_tokens: 30, ttft_ms: 10, itl_ms: 20}
protocols: [sse-h2, sse-h1]
load: {concurrency: 3, requests: 3, stagger_ms: 5}
warmup: {requests: 3}
connection: {connections: [1, per_stream]}
network:
  backend: tun
  seed: 3
  links:
    - name: one-drop
      rtt_ms: 20
      down: {drops: [{nth: 30, min_size: 100}]}
"""


def tun_devices() -> str:
    """TUN devices in the root namespace (the lab's live in namespaces that die)."""
    return subprocess.run(["ip", "-o", "link", "show", "type", "tun"], capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("lab")
    out = tmp / "out"
    proc = run_bench([write(tmp / "lab.yaml", LAB), "--out", out], tmp / "tls", timeout=120)
    return proc, out


def test_lab_run_keeps_ground_truth_and_traces(lab_run):
    proc, out = lab_run
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run = result_dir(out)
    summary = json.loads((run / "summary.json").read_text())
    lab = summary["network_lab"]
    assert lab["backend"] == "tun" and lab["congestion_control"] == "reno"
    rows = summary["rows"]
    # sse-h2 at 1 and per_stream connections; sse-h1 only one connection per stream.
    assert sorted((r["cell"], r["connections_policy"]) for r in rows) == [
        ("sse-h1", "per_stream"), ("sse-h2", "1"), ("sse-h2", "per_stream")]
    for row in rows:
        assert row["errors"] == 0 and row["n"] == 3, row
        assert row["link"]["rtt_ms"] == 20 and row["link"]["down"]["drops"]
        packets = [p for f in row["files"]["packets"] for p in read_csv(run / f)]
        dropped = [p for p in packets if p.dropped]
        assert len(dropped) == 1 and dropped[0].outcome == "droplist", dropped
        assert dropped[0].direction == "down" and dropped[0].size >= 100
        # Wire bytes come from the log (sent, lost or not), and the senders' device
        # counters over the same point agree with it.
        assert row["wire_source"].startswith("emulated link's packet log")
        for direction, key in (("up", "wire_up_bytes"), ("down", "wire_down_bytes")):
            logged = sum(p.size for p in packets if p.direction == direction)
            assert logged / row["n"] == pytest.approx(row[key], rel=1e-3), (direction, row)
            # The emulator reads the counters in the step that starts and stops its log,
            # so only a packet still queued in a TUN device at an edge can differ.
            counted = row["wire_counters_bytes"][direction]
            assert abs(logged - counted) <= 2 * 1500, (direction, logged, counted)
        (trace_file,) = row["files"]["traces"]
        traces = json.loads(gzip.decompress((run / trace_file).read_bytes()))
        assert traces, "one trace per stream"
        (hol,) = row["hol"]
        analysis = hol["analysis"]
        assert analysis["streams"] == 3 and hol["single_drop"]
        assert analysis["connections"] == (1 if row["connections_policy"] == "1" else 3)
        # The sender's congestion state was sampled in the server's namespace (tcp_info
        # of the server's sockets, one row per socket per sample) and the collateral
        # stalls split by it; on one connection a single drop holds the others by ordering.
        mech = hol["mechanism"]
        assert mech["source"].startswith("tcp_info"), mech
        assert mech["collateral_stalls"] == analysis["collateral_stalls"]
        samples = list(csv.DictReader(open(run / "mechanism" / f"{Path(trace_file).name[:-8]}"
                                           "-tcp.csv")))
        ports = {int(p.client_port) for p in packets}
        assert samples and {int(r["client_port"]) for r in samples} <= ports
        if row["connections_policy"] == "1" and mech["collateral_ms"]:
            assert mech["ordering_ms"] >= 0.8 * mech["collateral_ms"], mech
            assert mech["accounted_share"] >= 0.9, mech
    report = (run / "report.md").read_text()
    assert "## Head-of-line blocking" in report
    assert (run / "figures").is_dir()


def test_lab_leaves_no_namespace_device_or_process(lab_run):
    assert subprocess.run(["ip", "netns", "list"], capture_output=True,
                          text=True).stdout.strip() == ""
    assert tun_devices() == ""
    # run_bench already checked that no process of the run is alive.


def test_network_scenario_refused_with_loopback_and_others_still_run(tmp_path):
    proc = run_bench([write(tmp_path / "lab.yaml", LAB), "--loopback", "--out", tmp_path / "o"],
                     tmp_path / "tls")
    assert proc.returncode == 2, proc.stderr
    assert "needs the network lab" in proc.stderr and "root" in proc.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    plain = LAB.split("network:")[0].replace("connection: {connections: [1, per_stream]}\n", "")
    ok = run_bench([write(tmp_path / "plain.yaml", plain), "--loopback", "--out",
                    tmp_path / "p"], tmp_path / "tls")
    assert ok.returncode == 0, ok.stderr


def test_network_scenario_refused_without_privileges(tmp_path):
    """Root without capabilities (as in an unprivileged container) cannot make
    namespaces: the scenario is refused, saying why and how to run it."""
    proc = subprocess.run(["setpriv", "--bounding-set", "-all", "--inh-caps", "-all",
                           sys.executable, "bench.py", str(write(tmp_path / "lab.yaml", LAB)),
                           "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "cannot make a network namespace" in proc.stderr, proc.stderr
    assert "as root" in proc.stderr and "docker compose run" in proc.stderr
