"""Every cell against wirebench servers started apart (`remote:`), as on another host:
`python -m servers KIND --host 127.0.0.2 --tls-name 127.0.0.2 --api-key K --export-ca
PATH`, one per kind, then a scenario naming that address, the ports and the CA."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from servers.launcher import ServerGroup
from tests.integration.test_bench_cli import result_dir, run_bench, write

HOST = "127.0.0.2"          # another address of this machine: not the default 127.0.0.1
KEY = "remote-test-key"
KINDS = ("h1", "h2", "h3", "grpc", "ws", "caddy-h2")
TTFT_MS = 25

SCENARIO = """
name: remote
workload:
  - {{type: embed, batch_size: 2, dimensions: 16}}
  - {{type: stream, max_tokens: 4, ttft_ms: {ttft}, itl_ms: 2}}
protocols: [rest-h1, rest-h2, rest-h3, grpc, ws, sse-h2, grpc-stream, ws-stream,
            rest-h2@caddy+curl]
load: {{mode: closed, concurrency: 2, requests: 20}}
warmup: {{requests: 2}}
remote:
  host: {host}
  ca: {ca}
  api_key_env: WIREBENCH_REMOTE_KEY
  ports: {ports}
"""


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """The servers, started apart from any run, with a TLS set of their own (their
    certificate names 127.0.0.2, which the default set does not)."""
    tmp = tmp_path_factory.mktemp("remote")
    ca = tmp / "exported-ca.pem"
    env = {**os.environ, "WIREBENCH_TLS_DIR": str(tmp / "server-tls")}
    with ServerGroup() as group:
        extra = ["--tls-name", HOST, "--export-ca", str(ca)]
        ports = {kind: group.start(kind, host=HOST, api_key=KEY, env=env, extra=extra).port
                 for kind in KINDS}
        yield tmp, ca, ports


def scenario(tmp: Path, ca: Path, ports: dict[str, int]) -> Path:
    return write(tmp / "remote.yaml", SCENARIO.format(
        ttft=TTFT_MS, host=HOST, ca=ca, ports=json.dumps(ports)))


def test_every_cell_runs_against_servers_started_apart(remote, tmp_path, monkeypatch):
    tmp, ca, ports = remote
    monkeypatch.setenv("WIREBENCH_REMOTE_KEY", KEY)
    out = tmp_path / "out"
    # The runner's own TLS dir is empty: the exported CA is the only one that verifies.
    done = run_bench([scenario(tmp_path, ca, ports), "--out", out], tmp_path / "client-tls",
                     timeout=240)
    assert done.returncode == 0, done.stderr
    rows = json.loads((result_dir(out) / "summary.json").read_text())["rows"]
    assert len(rows) == 9
    for r in rows:
        assert r["n"] == 20 and r["errors"] == 0, r
        assert HOST in r["server_impl"], r["server_impl"]
        assert r["payload_down_bytes"] > 0
    by = {r["cell"]: r for r in rows}
    for cell in ("rest-h1", "rest-h2", "rest-h3", "grpc", "ws", "sse-h2"):
        # The server's own counters: CPU per request, > 0 and below a whole request time.
        assert 0 < by[cell]["server_cpu_ms_per_req"] < by[cell]["latency_p99_ms"] * 2, cell
    for cell in ("sse-h2", "grpc-stream", "ws-stream"):
        # The simulated model time reached the remote server (ttft_ms passes through).
        assert by[cell]["ttft_p50_ms"] >= TTFT_MS, cell


def test_a_wrong_ca_fails_verification(remote, tmp_path, monkeypatch):
    tmp, _, ports = remote
    monkeypatch.setenv("WIREBENCH_REMOTE_KEY", KEY)
    other_ca = tmp_path / "other-ca.pem"
    import trustme
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    path = write(tmp_path / "s.yaml", SCENARIO.format(
        ttft=TTFT_MS, host=HOST, ca=other_ca, ports=json.dumps(ports)).replace(
        "protocols: [rest-h1, rest-h2, rest-h3, grpc, ws, sse-h2, grpc-stream, ws-stream,\n"
        "            rest-h2@caddy+curl]", "protocols: [rest-h2]"))
    out = tmp_path / "out"
    done = run_bench([path, "--out", out], tmp_path / "client-tls", timeout=120)
    assert done.returncode == 1
    row, = json.loads((result_dir(out) / "summary.json").read_text())["rows"]
    assert row["n"] == 0 or row["errors"] > 0
    assert "tls_untrusted" in json.dumps(row), row


@pytest.mark.parametrize("extra,message", [
    ("", "no port for server kind 'grpc'"),
    ("ca", "remote.ca"),
])
def test_remote_scenario_problems_are_named(tmp_path, extra, message):
    ports = {"h1": 9001, "h2": 9002}
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    text = SCENARIO.format(ttft=TTFT_MS, host=HOST, ca=ca, ports=json.dumps(ports))
    text = text.replace("[rest-h1, rest-h2, rest-h3, grpc, ws, sse-h2, grpc-stream, ws-stream,"
                        "\n            rest-h2@caddy+curl]",
                        "[rest-h1, rest-h2]" if extra == "ca" else "[rest-h1, grpc]")
    if extra == "ca":
        text = text.replace(f"  ca: {ca}\n", "")
    done = run_bench([write(tmp_path / "s.yaml", text), "--dry-run"], tmp_path / "tls")
    assert done.returncode == 2 and message in done.stderr, done.stderr
