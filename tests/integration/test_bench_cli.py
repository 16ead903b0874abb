"""`python bench.py` end to end: real servers, real sockets, the CLI as a subprocess.

Every run gets its own tag in the environment (WIREBENCH_TEST_TAG); servers and
workers inherit it, so "no process left behind" is checked on exactly the processes
this run started, even while other tests run servers of their own. Runs are tiny:
the whole file takes well under 90 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from harness.scenario import load_scenario
from harness.scenario.workload import embed_requests
from protos import inference_pb2 as pb
from servers import core, openai_format

ROOT = Path(__file__).resolve().parents[2]
BENCH = str(ROOT / "bench.py")
CSV_HEAD = "protocol,concurrency,n,median_wall_s,p95_wall_s"
ALL_PROTOCOLS = ("rest-h1", "rest-h2", "rest-h3", "grpc", "ws",
                 "sse-h1", "sse-h2", "sse-h3", "grpc-stream", "ws-stream")


# ----------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    # A CA of this module's own: the runs never touch the user's ~/.cache.
    return tmp_path_factory.mktemp("tls")


def bench_env(tls_dir: Path, tag: str) -> dict[str, str]:
    return {**os.environ, "WIREBENCH_TLS_DIR": str(tls_dir), "WIREBENCH_TEST_TAG": tag,
            "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def tagged_processes(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process a run started: servers (`-m servers`),
    workers (`harness.run.worker`), and the namespace holders and nsenter wrappers a run
    as root adds. All inherit the run's environment, so all carry `tag`."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True,
                         check=True).stdout
    marker = f"WIREBENCH_TEST_TAG={tag}".encode()
    found = []
    for line in out.splitlines()[1:]:
        pid, _, args = line.strip().partition(" ")
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:           # gone meanwhile, or not ours to read
            continue
        if marker in environ:
            found.append((int(pid), args))
    return found


def assert_no_leftovers(tag: str, grace_s: float = 3.0) -> None:
    """No server or worker of this run is alive; any found is killed, then we fail."""
    deadline = time.monotonic() + grace_s
    left = tagged_processes(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = tagged_processes(tag)
    for pid, _ in left:           # only processes this test's run started
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes left behind: {left}"


def run_bench(args: list[str], tls_dir: Path, timeout: float = 60.0
              ) -> subprocess.CompletedProcess:
    tag = uuid.uuid4().hex
    try:
        proc = subprocess.run([sys.executable, BENCH, *map(str, args)], cwd=ROOT,
                              env=bench_env(tls_dir, tag), capture_output=True, text=True,
                              timeout=timeout)
    finally:
        assert_no_leftovers(tag)
    return proc


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def result_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def summary(out: Path) -> dict:
    return json.loads((result_dir(out) / "summary.json").read_text())


def rows_by_protocol(s: dict) -> dict[str, dict]:
    return {r["protocol"]: r for r in s["rows"]}


def hgrm_path(out: Path, row: dict, metric: str) -> Path:
    """hgrm/<protocol>-<c1|r50>[-<network>]-<metric>.hgrm (network: veth when the run
    could make network namespaces, i.e. as root; nothing on loopback)."""
    load = f"c{row['concurrency']}" if row["mode"] == "closed" else f"r{row['rate_offered_rps']:g}"
    net = "" if row["network"] == "loopback" else f"-{row['network']}"
    return result_dir(out) / "hgrm" / f"{row['protocol']}-{load}{net}-{metric}.hgrm"


# ----------------------------------------------------------------------- 1. bad input

GOOD_BODY = """\
workload: {type: embed, batch_size: 1, dimensions: 8}
protocols: [rest-h1]
load: {concurrency: 1, requests: 5}
"""

BAD = {
    "wrong_type": ("name: bad\nworkload: {type: embed, batch_size: \"8\"}\n"
                   "load: {requests: 5}\n", "workload.batch_size"),
    "unknown_key": ("name: bad\nworkload: {type: embed}\nload: {concurency: 2}\n",
                    "load.concurency"),
    "unknown_protocol": ("name: bad\nworkload: {type: embed}\nprotocols: [rest-h1, http9]\n"
                         "load: {requests: 5}\n", "protocols[1]"),
    "concurrency_zero": ("name: bad\nworkload: {type: embed}\nload: {concurrency: 0}\n",
                         "load.concurrency"),
    "yaml_syntax": ("name: bad\nworkload: {type: embed, batch_size: [1, 2}\n", "line 2"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenario_is_refused_before_anything_starts(case, tmp_path, tls_dir):
    text, field = BAD[case]
    path = write(tmp_path / f"{case}.yaml", text)
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = run_bench([path, "--out", out], tls_dir)
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and field in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()                       # no result dir, not even the root
    assert time.monotonic() - t0 < 15             # refused at once: no server started


def test_missing_file_is_refused(tmp_path, tls_dir):
    path, out = tmp_path / "nowhere.yaml", tmp_path / "out"
    proc = run_bench([path, "--out", out], tls_dir)
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "not found" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["--protocols", "nope"], "protocols"),          # not a protocol id
    (["--protocols", "grpc"], "protocols"),          # a protocol id the scenario lacks
    (["--bogus-flag"], "--bogus-flag"),              # argparse
])
def test_bad_cli_arguments_are_refused(args, needle, tmp_path, tls_dir):
    path = write(tmp_path / "good.yaml", "name: good\n" + GOOD_BODY)
    out = tmp_path / "out"
    proc = run_bench([path, "--out", out, *args], tls_dir)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert not out.exists()


# ----------------------------------------------------------------------- 2./4. numbers, outputs

COMPUTE_MS = 20.0
EMBED_PROTOCOLS = ("rest-h1", "rest-h2", "grpc", "ws")
EMBED_YAML = f"""\
name: cli-embed
description: "integration test: fixed 20 ms model time"
workload: {{type: embed, batch_size: 1, distinct_inputs: 1, dimensions: 32,
           compute_ms: {COMPUTE_MS}}}
protocols: [{", ".join(EMBED_PROTOCOLS)}]
load: {{concurrency: 1, requests: 20}}
warmup: {{requests: 3}}
seed: 3
"""


@pytest.fixture(scope="module")
def embed_run(tmp_path_factory, tls_dir):
    base = tmp_path_factory.mktemp("embed")
    path = write(base / "embed.yaml", EMBED_YAML)
    out = base / "out"
    proc = run_bench([path, "--out", out], tls_dir, timeout=60)
    return path, out, proc


def test_embed_latency_is_model_time_plus_measured_overhead(embed_run):
    _, out, proc = embed_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = rows_by_protocol(summary(out))
    assert set(rows) == set(EMBED_PROTOCOLS)
    for pid, r in rows.items():
        assert r["n"] == 20 and r["errors"] == 0, (pid, r["error_samples"])
        # The server awaits compute_ms per input, and reports at least that.
        assert r["server_time_p50_ms"] >= COMPUTE_MS, (pid, r["server_time_p50_ms"])
        # ...and adds little of its own: judged on the fastest request, which a busy
        # machine (timer wake-ups, preemption) cannot inflate as it can the median.
        fastest = r["distributions_ms"]["server_time"]["min"]
        assert COMPUTE_MS <= fastest <= COMPUTE_MS + 3, (pid, fastest)
        # Latency = model time + what the wire and both stacks add, which the row
        # measures as overhead. Epsilon: the server's own time past the 20 ms wait
        # (serializing, timer wake-up: ~0.5 ms idle, more on a busy machine).
        p50 = r["latency_p50_ms"]
        assert COMPUTE_MS <= p50 <= COMPUTE_MS + r["overhead_p99_ms"] + 3, (pid, p50, r)
        # Closed loop: latency = server time + overhead, request by request.
        assert p50 <= r["distributions_ms"]["server_time"]["p99"] + r["overhead_p99_ms"] + 0.1
        assert r["latency_p50_ms"] <= r["latency_p99_ms"] <= r["latency_max_ms"]
        assert r["median_wall_s"] == pytest.approx(p50 / 1000, abs=1e-6)


def _expected_request(path: Path) -> dict:
    # As the runner builds it: worker 0 of repeat 0 has seed seed*1000 + 0*100 + 0.
    s = load_scenario(path)
    return next(embed_requests(s.workload, s.seed * 1000))


def test_payload_bytes_are_the_serialized_messages(embed_run):
    path, out, proc = embed_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = rows_by_protocol(summary(out))
    req = _expected_request(path)
    assert req["wirebench"] == {"compute_ms": COMPUTE_MS, "seed": 3000}
    params = core.parse_embed_request(req)
    vectors = core.embed_batch(params)
    json_up = len(orjson.dumps(req))
    json_down = len(openai_format.embedding_response(params, vectors))

    # REST: the JSON body each way, exactly (every request is identical here).
    for pid in ("rest-h1", "rest-h2"):
        assert rows[pid]["payload_up_bytes"] == json_up, pid
        assert rows[pid]["payload_down_bytes"] == json_down, pid

    # gRPC: the protobuf messages, built independently of client and server code.
    tokens = sum(core.count_tokens(t) for t in params.inputs)
    up = pb.EmbedRequest(input=req["input"], model=req["model"], dimensions=req["dimensions"],
                         wirebench=pb.Knobs(compute_ms=COMPUTE_MS, seed=3000))
    down = pb.EmbedResponse(data=[pb.Embedding(values=v.tolist()) for v in vectors],
                            model=params.model,
                            usage=pb.Usage(prompt_tokens=tokens, total_tokens=tokens))
    assert rows["grpc"]["payload_up_bytes"] == up.ByteSize()
    assert rows["grpc"]["payload_down_bytes"] == down.ByteSize()

    # WebSocket: the same JSON body inside a small envelope ({"id":..,"type":..,"body":..}).
    envelope_up = rows["ws"]["payload_up_bytes"] - json_up
    assert len(b'{"id":"1","type":"embed","body":}') <= envelope_up <= 40, envelope_up
    envelope_down = rows["ws"]["payload_down_bytes"] - json_down
    assert 0 < envelope_down <= 100, envelope_down


def test_outputs_are_complete(embed_run):
    path, out, proc = embed_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = result_dir(out)
    assert d.name.endswith("-cli-embed")
    s = summary(out)
    assert s["schema_version"] >= 1 and s["status"] == "complete"
    assert s["scenario"] == load_scenario(path).to_dict()
    assert s["scenario"]["protocols"] == list(EMBED_PROTOCOLS)
    env = s["environment"]
    for key in ("python", "packages", "kernel", "cpu", "git_commit"):
        assert key in env, key
    assert env["python"] == sys.version.split()[0]
    assert env["packages"]["grpcio"] and env["packages"]["orjson"]

    csv_lines = (d / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith(CSV_HEAD)
    assert len(csv_lines) == 1 + len(EMBED_PROTOCOLS)
    assert {line.split(",")[0] for line in csv_lines[1:]} == set(EMBED_PROTOCOLS)

    for row in s["rows"]:
        hgrm = hgrm_path(out, row, "latency")
        assert hgrm.exists(), (hgrm, sorted(p.name for p in (d / "hgrm").iterdir()))
        assert "Percentile" in hgrm.read_text()
        # The hypervisor's share of the CPUs over the measured window, from /proc/stat.
        assert 0 <= row["host_steal"] <= 1, row["host_steal"]
        assert bool(row["host_noisy"]) == (row["host_steal"] >= 0.05)

    report = (d / "report.md").read_text()
    assert "cli-embed" in report and "complete" in report
    for pid in EMBED_PROTOCOLS:
        assert pid in report
    assert not list(d.glob("*.tmp")) and not list((d / "hgrm").glob("*.tmp"))


# ----------------------------------------------------------------------- 2. stream numbers

STREAM_PROTOCOLS = ("sse-h1", "grpc-stream", "ws-stream")
STREAM_YAML = f"""\
name: cli-stream
workload: {{type: stream, ttft_ms: 50, itl_ms: 2, max_tokens: 8}}
protocols: [{", ".join(STREAM_PROTOCOLS)}]
load: {{concurrency: 1, requests: 10}}
warmup: {{requests: 2}}
"""


def test_stream_ttft_is_model_ttft_plus_a_little(tmp_path, tls_dir):
    path = write(tmp_path / "stream.yaml", STREAM_YAML)
    out = tmp_path / "out"
    proc = run_bench([path, "--out", out], tls_dir, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = rows_by_protocol(summary(out))
    assert set(rows) == set(STREAM_PROTOCOLS)
    for pid, r in rows.items():
        assert r["n"] == 10 and r["errors"] == 0, (pid, r["error_samples"])
        assert 50.0 <= r["ttft_p50_ms"] <= 60.0, (pid, r["ttft_p50_ms"])
        # The last of 8 tokens is due at 50 + 7 * 2 ms.
        assert r["e2e_p50_ms"] >= 64.0, (pid, r["e2e_p50_ms"])
        assert 1.0 <= r["tpot_p50_ms"] <= 4.0, (pid, r["tpot_p50_ms"])
        assert r["server_time_p50_ms"] >= 64.0
    for row in rows.values():
        assert hgrm_path(out, row, "ttft").exists()


# ----------------------------------------------------------------------- 3. interrupts

LONG_YAML = """\
name: cli-long
workload: {type: embed, batch_size: 1, dimensions: 8, compute_ms: 1}
protocols: [rest-h1, grpc, ws]
load: {concurrency: 1, duration_s: 3}
warmup: {requests: 2}
"""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupt_after_a_row(args: list, env: dict, tag: str, out: Path, log_path: Path,
                          sig: int, wait_s: float = 30, preexec_fn=None
                          ) -> tuple[int, str, list[dict]]:
    """Run bench.py with `args`, send `sig` once its summary holds a finished row (the
    servers it started still running); (exit code, output, the rows seen before). No
    process of the run may be left after it."""
    with open(log_path, "w+") as log:
        proc = subprocess.Popen([sys.executable, BENCH, *map(str, args)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        try:
            seen: list[dict] = []
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    seen = summary(out)["rows"]
                except (FileNotFoundError, AssertionError, ValueError, StopIteration):
                    seen = []          # not written yet, or mid-replace
                if seen:
                    break
                time.sleep(0.1)
            assert seen and proc.poll() is None, "no finished row while the run was going"
            running = [a for _, a in tagged_processes(tag)]
            # The tag reaches the run's children: what the leftover check relies on.
            assert any("-m servers" in a for a in running), running
            proc.send_signal(sig)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.seek(0)
            output = log.read()
            assert_no_leftovers(tag)
    return code, output, seen


@pytest.mark.parametrize("sig, inherit_ignored", [
    (signal.SIGINT, False),
    (signal.SIGTERM, False),
    # As `python bench.py ... &` from a script: the shell starts it with SIGINT ignored,
    # and Python then never raises KeyboardInterrupt. Ctrl-C must abort all the same.
    (signal.SIGINT, True),
], ids=["SIGINT", "SIGTERM", "SIGINT-inherited-ignored"])
def test_interrupt_keeps_finished_rows_and_leaves_no_process(sig, inherit_ignored, tmp_path,
                                                             tls_dir):
    path = write(tmp_path / "long.yaml", LONG_YAML)
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    code, output, seen = interrupt_after_a_row(
        [path, "--out", out], bench_env(tls_dir, tag), tag, out, tmp_path / "bench.log", sig,
        preexec_fn=_ignore_sigint if inherit_ignored else None)
    assert code == 130, output
    s = summary(out)
    assert s["status"] == "aborted", output
    finished = {r["protocol"] for r in s["rows"]}
    assert {r["protocol"] for r in seen} <= finished
    assert 1 <= len(s["rows"]) < 3
    assert all(r["n"] > 0 for r in s["rows"])
    d = result_dir(out)
    report = (d / "report.md").read_text()
    assert "aborted" in report
    for pid in finished:
        assert pid in report
    assert (d / "summary.csv").read_text().startswith(CSV_HEAD)
    assert "Traceback" not in output


# ----------------------------------------------------------------------- 5. verdicts

def test_failed_threshold_exits_99(tmp_path, tls_dir):
    path = write(tmp_path / "thr.yaml",
                 "name: thr\n" + GOOD_BODY + 'thresholds: ["p99 < 0.001ms"]\n')
    out = tmp_path / "out"
    # --loopback: the one run here that never uses network namespaces, even as root.
    proc = run_bench([path, "--out", out, "--loopback"], tls_dir)
    assert proc.returncode == 99, proc.stdout + proc.stderr
    s = summary(out)
    assert s["status"] == "complete" and s["rows"][0]["errors"] == 0
    assert s["rows"][0]["network"] == "loopback"
    assert hgrm_path(out, s["rows"][0], "latency").exists()
    assert "FAIL" in (result_dir(out) / "report.md").read_text()


def test_errors_over_the_limit_exit_1(tmp_path, tls_dir):
    # A 0.1 ms timeout: no request can complete, every one is a `timeout` error.
    path = write(tmp_path / "err.yaml", """\
name: err
workload: {type: embed, batch_size: 1, dimensions: 8, compute_ms: 5}
protocols: [rest-h1]
load: {mode: open, rate: 100, arrival: constant, requests: 10, timeout_s: 0.0001}
warmup: {requests: 0}
thresholds: ["p99 < 0.001ms"]
""")
    out = tmp_path / "out"
    proc = run_bench([path, "--out", out], tls_dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr      # 1 wins over 99
    row = summary(out)["rows"][0]
    assert row["n"] == 0 and row["errors"] == 10 and row["error_rate"] == 1.0
    assert row["errors_by_class"] == {"timeout": 10}
    assert "timeout" in (result_dir(out) / "report.md").read_text()


# ----------------------------------------------------------------------- 6. CLI modes

def test_list_protocols(tls_dir):
    proc = run_bench(["--list-protocols"], tls_dir)
    assert proc.returncode == 0, proc.stderr
    ids = [line.split()[0] for line in proc.stdout.splitlines()
           if line.strip() and not line.startswith("#")]
    assert ids == list(ALL_PROTOCOLS)


def test_the_installed_wirebench_command_is_bench_py(tmp_path):
    """`pip install -e .` gives a `wirebench` command doing what `python bench.py` does,
    from any directory."""
    wirebench = Path(sys.executable).with_name("wirebench")
    command = [str(wirebench)] if wirebench.exists() else ["wirebench"]
    scenario = str(ROOT / "scenarios" / "embedding.yaml")
    installed = subprocess.run([*command, scenario, "--dry-run"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
    checkout = subprocess.run([sys.executable, BENCH, scenario, "--dry-run"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout == checkout.stdout and "load points" in installed.stdout


SWEEP_YAML = """\
name: sweep
workload: {type: embed}
protocols: [rest-h1, grpc]
load: {concurrency: [1, 2, 4], requests: 500}
warmup: {requests: 20}
repeats: 2
"""


def _plan_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.strip().startswith("repeat ")]


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path, tls_dir):
    path = write(tmp_path / "sweep.yaml", SWEEP_YAML)
    out = tmp_path / "out"
    proc = run_bench([path, "--out", out, "--dry-run"], tls_dir)   # checks no process
    assert proc.returncode == 0, proc.stderr
    plan = _plan_lines(proc.stdout)
    assert len(plan) == 2 * 2 * 3                      # repeats x protocols x points
    assert "500 requests" in proc.stdout and "20 warmup" in proc.stdout
    assert {line.split()[2] for line in plan} == {"rest-h1", "grpc"}
    assert not out.exists()

    quick = run_bench([path, "--out", out, "--dry-run", "--quick"], tls_dir)
    assert quick.returncode == 0, quick.stderr
    plan = _plan_lines(quick.stdout)
    assert len(plan) == 1 * 2 * 2                      # one repeat, first and last point
    assert {line.split()[-1] for line in plan} == {"1", "4"}
    assert "30 requests" in quick.stdout and "3 warmup" in quick.stdout

    one = run_bench([path, "--out", out, "--dry-run", "--protocols", "grpc"], tls_dir)
    assert one.returncode == 0, one.stderr
    assert {line.split()[2] for line in _plan_lines(one.stdout)} == {"grpc"}
    assert not out.exists()


# ----------------------------------------------------------------------- 7. open loop

def test_open_loop_holds_its_rate(tmp_path, tls_dir):
    path = write(tmp_path / "open.yaml", """\
name: open
workload: {type: embed, batch_size: 1, dimensions: 8}
protocols: [rest-h1]
load: {mode: open, rate: 50, arrival: constant, requests: 40}
warmup: {requests: 3}
""")
    out = tmp_path / "out"
    proc = run_bench([path, "--out", out], tls_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = summary(out)["rows"][0]
    assert row["mode"] == "open" and row["rate_offered_rps"] == 50
    assert row["n"] == 40 and row["errors"] == 0
    assert 40 <= row["throughput_rps"] <= 60, row["throughput_rps"]
    assert row["late_starts"] <= 4, row["late_starts"]          # at most 10%
    assert hgrm_path(out, row, "latency").exists()


# ----------------------------------------------------------------------- workers

def test_more_workers_than_users_still_send_every_request(tmp_path, tls_dir):
    # 4 workers, 1 and 2 users: the idle workers' shares must not be dropped.
    path = write(tmp_path / "workers.yaml", """\
name: workers
workload: {type: embed, batch_size: 1, dimensions: 8}
protocols: [rest-h1]
load: {concurrency: [1, 2], requests: 21}
warmup: {requests: 1}
workers: 4
""")
    out = tmp_path / "out"
    proc = run_bench([path, "--out", out], tls_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(r["concurrency"], r["n"]) for r in summary(out)["rows"]] == [(1, 21), (2, 21)]


@pytest.mark.parametrize("make, why", [
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "not a directory"),
    (lambda tmp: (tmp / "file2").write_text("x") and tmp / "file2" / "sub", "cannot create it"),
])
def test_a_bad_out_path_is_refused_before_anything_starts(tmp_path, tls_dir, make, why):
    out = make(tmp_path)
    proc = run_bench([ROOT / "scenarios" / "embedding.yaml", "--out", out], tls_dir, timeout=30)
    assert proc.returncode == 2
    assert why in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


QUICK_POOL_YAML = """\
name: quickpool
workload: {type: embed, batch_size: 1, dimensions: 8}
protocols: [rest-h1, rest-h2]
load: {concurrency: [1, 8], requests: 100}
warmup: {requests: 20}
"""


def test_quick_mode_warms_every_connection_it_measures(tmp_path, tls_dir):
    """--quick keeps 3 warmup requests; at 8 users HTTP/1.1 needs 8 connections, and
    none of them may be opened inside the measured window."""
    path = write(tmp_path / "quickpool.yaml", QUICK_POOL_YAML)
    out = tmp_path / "out"
    proc = run_bench([path, "--out", out, "--quick"], tls_dir)
    assert proc.returncode == 0, proc.stderr
    rows = summary(out)["rows"]
    assert {(r["protocol"], r["concurrency"]) for r in rows} == {
        (p, c) for p in ("rest-h1", "rest-h2") for c in (1, 8)}
    assert all(r["new_connections"] == 0 for r in rows), [
        (r["protocol"], r["concurrency"], r["new_connections"]) for r in rows]
    # Off a terminal the output is plain and fits 100 columns; rows fastest first per
    # load point, and a p99 on 30 samples says it is indicative.
    table = proc.stdout.splitlines()
    assert max(map(len, table)) <= 100, max(table, key=len)
    assert "\x1b[" not in proc.stdout
    assert "p99 rests on fewer than 100 samples" in proc.stdout
    rows_c1 = [line.split() for line in table if line.startswith(" rest-h") and " c=1 " in line]
    p50s = [float(cols[3]) for cols in rows_c1]
    assert len(p50s) == 2 and p50s == sorted(p50s)
    wide = run_bench([path, "--out", out, "--quick", "--wide"], tls_dir)
    assert wide.returncode == 0, wide.stderr
    assert "payload up B" in wide.stdout and max(map(len, wide.stdout.splitlines())) > 100


SLO_YAML = """\
name: goodput
workload: {type: embed, batch_size: 1, dimensions: 8, compute_ms: 4}
protocols: [rest-h1]
load: {concurrency: [1], requests: 60}
warmup: {requests: 5}
slo: ["latency < 2ms"]
"""


def test_an_slo_gives_goodput_per_row(tmp_path, tls_dir):
    """4 ms of simulated compute against a 2 ms SLO: no request keeps it; against 1 s
    every one does (the same run's rows, through the whole pipeline)."""
    out = tmp_path / "out"
    tight = write(tmp_path / "tight.yaml", SLO_YAML)
    loose = write(tmp_path / "loose.yaml", SLO_YAML.replace("2ms", "1s"))
    for path, fraction in ((tight, 0.0), (loose, 1.0)):
        proc = run_bench([path, "--out", out], tls_dir)
        assert proc.returncode == 0, proc.stderr
        (row,) = summary(out)["rows"]
        assert row["goodput_fraction"] == fraction and row["slo"] == [
            "latency < 2ms" if fraction == 0 else "latency < 1s"]
        assert "good%" in proc.stdout
        shutil.rmtree(out)
