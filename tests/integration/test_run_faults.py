"""A run survives its own parts: a frozen or killed worker and a dead server fail only
their point (survivors' data kept and marked), the run goes on, exit 1 names the point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.test_bench_cli import (BENCH, ROOT, assert_no_leftovers, bench_env,
                                              result_dir, tagged_processes, write)

SCENARIO = """
name: faults
workload: {{type: embed, batch_size: 1, dimensions: 8}}
protocols: {protocols}
load: {{mode: closed, concurrency: {concurrency}, duration_s: 4, timeout_s: 1}}
warmup: {{requests: 5}}
workers: {workers}
repeats: {repeats}
"""


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tls")


def run_with_fault(tmp_path: Path, tls_dir: Path, fault, *, protocols="[rest-h1, ws]",
                   workers=1, concurrency=1, repeats=1) -> tuple[subprocess.CompletedProcess,
                                                                 dict]:
    """Start a run, apply `fault(tag)` once its first worker measures, wait for the end."""
    path = write(tmp_path / "s.yaml", SCENARIO.format(protocols=protocols, workers=workers,
                                                      concurrency=concurrency, repeats=repeats))
    out, tag = tmp_path / "out", uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, BENCH, str(path), "--out", str(out), "--loopback"],
                            cwd=ROOT, env=bench_env(tls_dir, tag), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not [p for p in tagged_processes(tag) if "harness.run.worker" in p[1]]:
            assert time.monotonic() < deadline, "no worker started"
            time.sleep(0.1)
        time.sleep(1.5)                 # warm, and measuring
        fault(tag)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert_no_leftovers(tag)
    summary = json.loads((result_dir(out) / "summary.json").read_text())
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), summary


def signal_workers(sig: int, count: int = 1):
    def fault(tag: str) -> None:
        workers = [pid for pid, args in tagged_processes(tag) if "harness.run.worker" in args]
        for pid in workers[:count]:
            os.kill(pid, sig)
    return fault


def rows_by_cell(summary: dict) -> dict[str, dict]:
    return {r["cell"]: r for r in summary["rows"]}


def test_a_frozen_worker_fails_its_point_and_the_run_goes_on(tmp_path, tls_dir):
    done, summary = run_with_fault(tmp_path, tls_dir, signal_workers(signal.SIGSTOP))
    assert done.returncode == 1, done.stderr
    assert "frozen or stopped" in done.stderr and "point failed" in done.stderr
    rows = rows_by_cell(summary)
    failed = [r for r in rows.values() if r["failed"]]
    assert len(failed) == 1 and "frozen" in failed[0]["failed"]
    other = next(r for r in rows.values() if not r["failed"])
    assert other["n"] > 0                                  # the next protocol still ran


def test_a_killed_worker_keeps_its_siblings_results(tmp_path, tls_dir):
    done, summary = run_with_fault(tmp_path, tls_dir, signal_workers(signal.SIGKILL),
                                   protocols="[rest-h1]", workers=2, concurrency=2)
    assert done.returncode == 1, done.stderr
    row, = summary["rows"]
    assert "partial: 1 of 2 workers reported" in row["failed"]
    assert "killed by signal 9" in row["failed"]
    assert row["n"] > 50                                   # the survivor's requests kept
    # The server's CPU and the bytes it sent also served the killed worker's requests,
    # which nobody counted: per request they would be inflated, so they are not given.
    assert row["wire_source"].startswith("not measured: a worker failed")
    assert row["wire_down_bytes"] is None and row["server_cpu_ms_per_req"] is None


def test_a_dead_server_fails_its_cell_at_once_and_a_fresh_one_serves_the_next(tmp_path,
                                                                              tls_dir):
    def kill_server(tag: str) -> None:
        for pid, args in tagged_processes(tag):
            if "-m servers" in args:
                os.kill(pid, signal.SIGKILL)

    t0 = time.monotonic()
    done, summary = run_with_fault(tmp_path, tls_dir, kill_server, protocols="[rest-h1]",
                                   repeats=2)
    assert done.returncode == 1, done.stderr
    assert "server was killed by signal 9" in done.stderr
    row, = summary["rows"]
    assert "server was killed" in row["failed"] and row["n"] > 0   # the second repeat ran
    assert time.monotonic() - t0 < 40


def test_a_target_that_accepts_but_never_answers_is_warned_and_stopped_early(tmp_path,
                                                                              tls_dir):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []

    def accept_and_hold() -> None:          # reads nothing back, answers nothing
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_and_hold, daemon=True).start()
    port = listener.getsockname()[1]
    path = write(tmp_path / "silent.yaml", f"""
name: silent
workload: {{type: embed, batch_size: 1, dimensions: 8}}
protocols: [rest-h1]
target: {{base_url: "http://127.0.0.1:{port}/v1", model: m}}
load: {{mode: closed, concurrency: 2, requests: 200, timeout_s: 1}}
warmup: {{requests: 0}}
""")
    t0, tag = time.monotonic(), uuid.uuid4().hex
    try:
        done = subprocess.run([sys.executable, BENCH, str(path), "--out", str(tmp_path / "o")],
                              cwd=ROOT, env=bench_env(tls_dir, tag), capture_output=True,
                              text=True, timeout=60)
    finally:
        listener.close()
        for conn in held:
            conn.close()
        assert_no_leftovers(tag)
    assert done.returncode == 1, done.stderr
    assert "warning" in done.stderr and "no complete response within 1 s" in done.stderr
    assert "does not answer" in done.stderr
    assert time.monotonic() - t0 < 20                  # not 200 timeouts


def test_a_sigkilled_run_reads_as_killed_in_the_next_run_and_in_compare(tmp_path, tls_dir):
    out = tmp_path / "out"

    def kill_bench(tag: str) -> None:
        for pid, args in tagged_processes(tag):
            if "bench.py" in args:
                os.kill(pid, signal.SIGKILL)

    path = write(tmp_path / "s.yaml", SCENARIO.format(protocols="[rest-h1, ws]", workers=1,
                                                      concurrency=1, repeats=1))
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, BENCH, str(path), "--out", str(out), "--loopback"],
                            cwd=ROOT, env=bench_env(tls_dir, tag), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        summary_path = None
        deadline = time.monotonic() + 40
        while summary_path is None:      # killed after its first point was written
            assert time.monotonic() < deadline
            found = list(out.glob("*/summary.json")) if out.exists() else []
            if found and json.loads(found[0].read_text())["rows"]:
                summary_path = found[0]
            time.sleep(0.2)
        kill_bench(tag)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        deadline = time.monotonic() + 10     # its servers and workers follow it
        while tagged_processes(tag) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert_no_leftovers(tag)
    assert json.loads(summary_path.read_text())["status"] == "running"
    compare = subprocess.run([sys.executable, BENCH, "compare", str(summary_path.parent),
                              str(summary_path.parent)], cwd=ROOT, capture_output=True,
                             text=True, timeout=30)
    assert "Traceback" not in compare.stderr
    assert "is killed: partial results (incomplete)" in compare.stdout + compare.stderr
    quick = write(tmp_path / "q.yaml", SCENARIO.format(protocols="[rest-h1]", workers=1,
                                                       concurrency=1, repeats=1)
                  .replace("duration_s: 4", "duration_s: 1"))
    tag = uuid.uuid4().hex
    try:
        nxt = subprocess.run([sys.executable, BENCH, str(quick), "--out", str(out),
                              "--loopback"], cwd=ROOT, env=bench_env(tls_dir, tag),
                             capture_output=True, text=True, timeout=60)
    finally:
        assert_no_leftovers(tag)
    assert "was killed mid-run" in nxt.stderr
    assert json.loads(summary_path.read_text())["status"] == "killed"


def test_a_stopped_server_fails_its_cell_at_once(tmp_path, tls_dir):
    def stop_server(tag: str) -> None:
        for pid, args in tagged_processes(tag):
            if "-m servers" in args:
                os.kill(pid, signal.SIGSTOP)

    t0 = time.monotonic()
    done, summary = run_with_fault(tmp_path, tls_dir, stop_server, protocols="[rest-h1]",
                                   repeats=2)
    assert done.returncode == 1, done.stderr
    assert "server is stopped" in done.stderr
    row, = summary["rows"]
    assert "stopped" in row["failed"] and row["n"] > 0       # a fresh server ran repeat 2
    assert time.monotonic() - t0 < 40


STUCK_WORKER = """
import asyncio, harness.run.load.loadgen as loadgen, harness.run.worker as worker

def stuck(*args, **kw):                 # a client that swallows its request's cancellation
    client = open_client(*args, **kw)
    async def embed(request):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
    client.embed = embed
    return client

open_client, loadgen.open_client = loadgen.open_client, stuck
worker.run()
"""


def test_a_worker_that_beats_but_never_finishes_is_killed_at_its_plan_deadline(tmp_path):
    import threading


    from harness.run.events import Result, Warm
    from clients.base import Target
    from harness.run.job import LoadJob
    from harness.run.runner import Runner
    from harness.scenario import parse_scenario
    from harness.run.watchdog import PointFailed, phase_deadline_s

    scenario = parse_scenario({"name": "stuck", "workload": {"type": "embed"},
                               "load": {"concurrency": 1, "requests": 2, "timeout_s": 0.5}})
    runner = Runner(scenario, tmp_path, None, loopback=True)
    job = LoadJob(protocol="rest-h1", target=Target(port=9),
                  workload=scenario.workload, mode="closed", requests=2, warmup=0,
                  timeout_s=0.5, client_path="async")
    err = tempfile.TemporaryFile()          # as Runner._spawn gives it
    proc = subprocess.Popen([sys.executable, "-c", STUCK_WORKER], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    proc.errfile, proc.protocol, proc.job = err, job.protocol, job
    guard = threading.Timer(30, proc.kill)  # the code as it was waits forever
    guard.start()
    try:
        proc.stdin.write(job.to_json() + b"\n")
        proc.stdin.flush()
        runner._events([proc], Warm)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        t0 = time.monotonic()
        with pytest.raises(PointFailed, match="did not reach 'result' within 6 s.*stuck"):
            runner._events([proc], Result)
        waited = time.monotonic() - t0
    finally:
        guard.cancel()
        proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout, err):
            f.close()
    # its heartbeat went on (not silent), and it was killed at the plan's deadline
    assert phase_deadline_s(job, "result") <= waited < phase_deadline_s(job, "result") + 3
