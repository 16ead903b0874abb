"""benchmarks/curl_alone.py (libcurl with nothing around it, fidelity.py's "libcurl alone"
row) against the real servers: it completes requests without errors, and its rate and
latency (libcurl's own, start to last byte) fit a closed loop of C users."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUEST = {"input": ["the quick brown fox"], "dimensions": 8, "model": "wirebench-embed-1"}


@pytest.mark.parametrize("kind,version,conc", [("h1", "1.1", 1), ("h1", "1.1", 4),
                                               ("h2", "2", 4)])
def test_curl_alone_measures_a_closed_loop(servers, tmp_path, kind, version, conc):
    srv = servers.start(kind, extra=[] if kind == "h1" else ["--h2c-port", "0"])
    port = srv.port if kind == "h1" else srv.info["h2c_port"]
    body = tmp_path / "body.json"
    body.write_bytes(orjson.dumps(REQUEST))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "curl_alone.py"),
                          f"http://127.0.0.1:{port}/v1/embeddings", str(body), "--http",
                          version, "--concurrency", str(conc), "--duration", "0.4"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    warm, line = out.stdout.splitlines()
    assert warm == "warm"
    r = json.loads(line)
    assert r["errors"] == 0 and r["requests"] > 20
    assert 0.3 < r["wall_s"] < 5
    # Little's law with at most `conc` in flight: rate <= conc / mean latency (the
    # median stands in for the mean, with a factor 2 of slack)
    assert r["p50_us"] > 0 and r["p50_us"] / 1e6 < r["wall_s"]
    assert r["requests"] / r["wall_s"] <= conc / (r["p50_us"] / 1e6) * 2
