"""benchmarks/curl_alone.py and benchmarks/libcurl_loop.c (libcurl with nothing around it,
through pycurl and in C: fidelity.py's "libcurl alone" and "libcurl in C" rows) against
the real servers: each completes requests without errors, and its rate and latency
(libcurl's own, start to last byte) fit a closed loop of C users. And
benchmarks/slowed_native.c (the "native+N" rows): preloaded, it adds its busy time to
every socket write and to nothing else."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUEST = {"input": ["the quick brown fox"], "dimensions": 8, "model": "wirebench-embed-1"}


CASES = [("h1", "1.1", 1), ("h1", "1.1", 4), ("h2", "2", 4)]


@pytest.fixture(scope="module")
def fidelity_tools():
    """benchmarks/fidelity_tools.py, which compiles the C pieces fidelity.py runs."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler (apt-get install -y gcc; .ci/run installs it)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fidelity_tools
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return fidelity_tools


@pytest.fixture(scope="module")
def native(fidelity_tools, tmp_path_factory):
    """fidelity.py's runner of native tools, unpinned."""
    return fidelity_tools.Native(tmp_path_factory.mktemp("fidelity_c"),
                                 fidelity_tools.Pinning.choose(False))


@pytest.fixture(scope="module")
def libcurl_loop(fidelity_tools, native) -> list[str]:
    """The C loop, compiled as fidelity.py compiles it, and the libcurl pycurl loads."""
    return [str(native._compiled("libcurl_loop")), str(fidelity_tools.bundled_libcurl())]


def _check_closed_loop(out: subprocess.CompletedProcess, conc: int) -> None:
    assert out.returncode == 0, out.stderr
    warm, line = out.stdout.splitlines()
    assert warm == "warm"
    r = json.loads(line)
    assert r["errors"] == 0 and r["requests"] > 20
    assert 0.3 < r["wall_s"] < 5
    assert 0 < r["cpu_s"] < r["wall_s"] * 1.5
    # Little's law with at most `conc` in flight: rate <= conc / mean latency (the
    # median stands in for the mean, with a factor 2 of slack)
    assert r["p50_us"] > 0 and r["p50_us"] / 1e6 < r["wall_s"]
    assert r["requests"] / r["wall_s"] <= conc / (r["p50_us"] / 1e6) * 2


def _serve(servers, kind: str, tmp_path: Path) -> tuple[str, Path]:
    srv = servers.start(kind, extra=[] if kind == "h1" else ["--h2c-port", "0"])
    port = srv.port if kind == "h1" else srv.info["h2c_port"]
    body = tmp_path / "body.json"
    body.write_bytes(orjson.dumps(REQUEST))
    return f"http://127.0.0.1:{port}/v1/embeddings", body


@pytest.mark.parametrize("kind,version,conc", CASES)
def test_curl_alone_measures_a_closed_loop(servers, tmp_path, kind, version, conc):
    url, body = _serve(servers, kind, tmp_path)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "curl_alone.py"),
                          url, str(body), "--http", version, "--concurrency", str(conc),
                          "--duration", "0.4"],
                         capture_output=True, text=True, timeout=60, check=False)
    _check_closed_loop(out, conc)


@pytest.mark.parametrize("kind,version,conc", CASES)
def test_libcurl_loop_in_c_measures_a_closed_loop(servers, tmp_path, libcurl_loop, kind,
                                                   version, conc):
    url, body = _serve(servers, kind, tmp_path)
    out = subprocess.run([*libcurl_loop, url, str(body), version, str(conc), "0.4"],
                         capture_output=True, text=True, timeout=60, check=False)
    _check_closed_loop(out, conc)


def test_libcurl_loop_in_c_says_what_is_wrong(tmp_path, libcurl_loop):
    exe, _ = libcurl_loop
    out = subprocess.run([exe, str(tmp_path / "no-such-libcurl.so"), "http://127.0.0.1:9/",
                          str(tmp_path / "body.json"), "1.1", "1", "0.1"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2 and "cannot load" in out.stderr and out.stdout == ""


# A child that times N calls of each kind of write on a loopback TCP connection (each
# written byte read back, so no buffer fills), and N writes to its stdout.
_WRITES = """
import os, socket, sys, time
n = int(sys.argv[1])
lsn = socket.create_server(("127.0.0.1", 0))
a = socket.create_connection(lsn.getsockname())
b, _ = lsn.accept()
calls = {"send": lambda: a.send(b"x"), "write": lambda: os.write(a.fileno(), b"x"),
         "writev": lambda: os.writev(a.fileno(), [b"x"]), "sendmsg": lambda: a.sendmsg([b"x"])}
out = {}
for name, call in calls.items():
    t = time.perf_counter()
    for _ in range(n):
        call()
        b.recv(1)
    out[name] = time.perf_counter() - t
t = time.perf_counter()
for _ in range(n):
    os.write(1, b"")
out["stdout"] = time.perf_counter() - t
print(out)
"""


def test_slowed_native_adds_its_time_to_each_socket_write_only(native):
    shim = native._compiled("slowed_native", shared=True)
    n, added_us = 40, 1000
    env = dict(os.environ, LD_PRELOAD=str(shim), WIREBENCH_ADDED_US=str(added_us))
    out = subprocess.run([sys.executable, "-c", _WRITES, str(n)], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    took = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    # A busy wait of added_us per call is a hard lower bound on each kind's wall time.
    for call in ("send", "write", "writev", "sendmsg"):
        assert took[call] >= n * added_us / 1e6, (call, took)
    # Writes to stdin/stdout/stderr are the tool's own output, not its requests.
    assert took["stdout"] < n * added_us / 1e6 / 2, took
