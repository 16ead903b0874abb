"""benchmarks/curl_alone.py and benchmarks/libcurl_loop.c (libcurl with nothing around it,
through pycurl and in C: fidelity.py's "libcurl alone" and "libcurl in C" rows) against
the real servers: each completes requests without errors, and its rate and latency
(libcurl's own, start to last byte) fit a closed loop of C users."""

from __future__ import annotations

import json
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
def libcurl_loop(tmp_path_factory) -> list[str]:
    """The C loop, compiled as fidelity.py compiles it, and the libcurl pycurl loads."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler (apt-get install -y gcc; .ci/run installs it)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from fidelity_measure import Pinning
        from fidelity_tools import Native, bundled_libcurl
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    native = Native(tmp_path_factory.mktemp("libcurl_loop"), Pinning.choose(False))
    return [str(native._libcurl_loop()), str(bundled_libcurl())]


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
