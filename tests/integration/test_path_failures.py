"""Failures of the path, each its own per-request error class with a message naming
host:port and the step: a certificate from a CA the client does not trust, an expired
one, one for another name, a refused connection, a silent peer (TCP connect or TLS
handshake timeout). Real servers on real sockets: the project's HTTP/3 server kind
(hypercorn: TLS over TCP for HTTP/1.1 and HTTP/2, QUIC on the same port) serving the bad
certificates of servers.bad_tls, and plain listening sockets for the silent peers.
Each client setup that failed then succeeds against the good server."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from clients import open_client
from clients.base import ConnectError, Target
from servers.bad_tls import CASES, make_tls_cases
from servers.launcher import start_server

EMBED = {"input": ["x"], "dimensions": 8}
TLS_PROTOCOLS = ("rest-h1", "rest-h2", "rest-h3")   # rest-h1 over TLS here (tls=True)
EXPECTED = {"untrusted": ("tls_untrusted", "not signed by a CA the client trusts"),
            "expired": ("tls_expired", "expired"),
            "mismatch": ("tls_name_mismatch", "another name")}
H3_WORDS = {"untrusted": "unable to get local issuer", "expired": "no longer valid",
            "mismatch": "doesn't match"}


@pytest.fixture(scope="module")
def bad_servers(tmp_path_factory, tls_files):
    """One server per certificate case, started side by side (~1 s, not ~4). The pool's
    threads outlive the servers: a server dies with the thread that started it
    (PR_SET_PDEATHSIG follows the thread)."""
    cases = make_tls_cases(tmp_path_factory.mktemp("bad-tls"))
    with ThreadPoolExecutor(len(CASES)) as pool:
        started = dict(zip(CASES, pool.map(
            lambda c: start_server("h3", env={"WIREBENCH_TLS_DIR": str(cases[c].ca.parent)}),
            CASES)))
        try:
            yield cases, started
        finally:
            list(pool.map(lambda srv: srv.stop(), started.values()))   # ~1 s each


def target(cases, srv, **kw) -> Target:
    # Every case's client trusts the same CA (the good one's) and asks for localhost.
    return Target(port=srv.port, ca=cases["good"].ca, tls=True, server_name="localhost", **kw)


async def embed_once(protocol: str, t: Target):
    async with open_client(protocol, t, reuse=False) as client:
        return await client.embed(dict(EMBED))


@pytest.mark.parametrize("protocol", TLS_PROTOCOLS)
@pytest.mark.parametrize("case", ["untrusted", "expired", "mismatch"])
async def test_bad_certificate_is_its_own_error_class(bad_servers, protocol, case):
    cases, servers = bad_servers
    t = target(cases, servers[case])
    with pytest.raises(ConnectError) as err:
        await embed_once(protocol, t)
    kind, words = EXPECTED[case]
    assert err.value.kind == kind, err.value
    message = str(err.value)
    assert f"{t.host}:{t.port}" in message or f"localhost:{t.port}" in message, message
    if protocol == "rest-h3":       # aioquic's own words, classified
        assert "QUIC handshake" in message and H3_WORDS[case] in message, message
    else:
        assert "TLS handshake failed" in message and words in message, message
    # The same client setup, pointed at the good server, works.
    ok = await embed_once(protocol, dataclasses.replace(t, port=servers["good"].port))
    assert ok.vectors.shape == (1, 8)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["rest-h1", "rest-h2", "sse-h1", "rest-h3", "ws", "grpc"])
async def test_refused_connection(bad_servers, servers, protocol):
    cases, _ = bad_servers
    port = free_port(socket.SOCK_DGRAM if protocol == "rest-h3" else socket.SOCK_STREAM)
    t = Target(port=port, ca=cases["good"].ca)
    with pytest.raises(ConnectError) as err:
        async with open_client(protocol, t, reuse=False) as client:
            if client.streaming:
                await client.generate({"messages": [{"role": "user", "content": "x"}],
                                       "max_tokens": 2})
            else:
                await client.embed(dict(EMBED))
    assert err.value.kind == "refused", err.value
    assert f"127.0.0.1:{port}" in str(err.value)
    text = str(err.value).lower()
    assert "refused" in text or "unreachable" in text, text


@pytest.fixture
def silent_listeners():
    """(never-accepting listener whose SYN queue is full: TCP connect hangs,
    listener that never accepts or reads: TCP connects, TLS hangs)."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname(), timeout=1)   # fills the queue
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(8)
    yield full.getsockname()[1], quiet.getsockname()[1]
    for s in (filler, full, quiet):
        s.close()


@pytest.mark.parametrize("protocol", ["rest-h1", "rest-h2"])
async def test_phase_timeouts_name_the_step(bad_servers, silent_listeners, protocol):
    cases, servers = bad_servers
    syn_dropped, never_reads = silent_listeners
    base = Target(ca=cases["good"].ca, tls=True, server_name="localhost",
                  connect_timeout_s=0.3)
    for port, step in ((syn_dropped, "TCP connect timed out after 0.3 s"),
                       (never_reads, "TLS handshake timed out after 0.3 s")):
        with pytest.raises(ConnectError) as err:
            await embed_once(protocol, dataclasses.replace(base, port=port))
        assert err.value.kind == "phase_timeout", err.value
        assert step in str(err.value) and f"127.0.0.1:{port}" in str(err.value), err.value
    ok = await embed_once(protocol, dataclasses.replace(base, port=servers["good"].port))
    assert ok.vectors.shape == (1, 8)


async def test_ws_and_h3_phase_timeouts(silent_listeners):
    syn_dropped, never_reads = silent_listeners
    with pytest.raises(ConnectError) as err:
        await embed_once("ws", Target(port=never_reads, connect_timeout_s=0.3))
    assert err.value.kind == "phase_timeout" and "upgrade timed out" in str(err.value)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:   # bound, never answers
        udp.bind(("127.0.0.1", 0))
        t = Target(port=udp.getsockname()[1], connect_timeout_s=0.3)
        with pytest.raises(ConnectError) as err:
            await embed_once("rest-h3", t)
    assert err.value.kind == "phase_timeout" and "timed out after 0.3 s" in str(err.value)


async def test_loadgen_counts_each_failure_class_and_the_run_continues(bad_servers):
    """One closed-loop run, three users: one on the good server, one on the expired
    certificate, one on a refused port. Every request is made; the failures are counted
    per request by class, with a sample message each, beside the successes."""
    from harness.run.job import LoadJob
    from harness.run.load.loadgen import LoadRunner
    from harness.scenario.model import Workload
    from harness.measure.recorder import Recorder
    from tests.integration.test_loadgen_timeouts import WORKLOAD

    cases, servers = bad_servers
    good = target(cases, servers["good"])
    dead = free_port()
    job = LoadJob(protocol="rest-h2", target=Target(port=good.port),
                  workload=Workload.from_dict(WORKLOAD), mode="closed", concurrency=3, requests=30, warmup=0,
                  timeout_s=10, reuse=False, keep_rows=True, client_path="async")
    runner = LoadRunner(job)
    await asyncio.gather(*(c.close() for c in runner.clients))
    runner.clients = [open_client("rest-h2", t, reuse=False) for t in (
        good, target(cases, servers["expired"]), dataclasses.replace(good, port=dead))]
    try:
        out = await runner.measure()
    finally:
        await runner.close()
    rec = Recorder.from_json(out.recorder)
    # The users share the 30 requests: quick failures take more of them than successes.
    assert set(rec.errors) == {"tls_expired", "refused"} and rec.n >= 1, rec.errors
    assert rec.n + rec.error_count == 30 and len(rec.rows) == 30
    assert {row[-1] for row in rec.rows} == {"", "refused", "tls_expired"}
    assert f"127.0.0.1:{servers['expired'].port}" in rec.error_samples["tls_expired"]
    assert f"127.0.0.1:{dead}" in rec.error_samples["refused"]


def test_bench_run_reports_errors_by_class(tmp_path, bad_servers):
    """Through bench.py: an external HTTPS target whose certificate no system CA signed.
    Every request is attempted and counted as tls_untrusted in the result row; the run
    ends with exit code 1 (errors over the limit), results written."""
    from tests.integration.test_bench_cli import run_bench, summary, write

    _, servers = bad_servers
    scenario = write(tmp_path / "s.yaml", f"""\
name: untrusted
workload: {{type: embed, batch_size: 1, dimensions: 8}}
protocols: [rest-h1, rest-h2]
load: {{concurrency: 2, requests: 6}}
warmup: {{requests: 0}}
target: {{base_url: "https://localhost:{servers['good'].port}/v1", model: m}}
""")
    proc = run_bench([scenario, "--loopback", "--out", tmp_path / "out"], tmp_path / "tls")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    rows = {r["protocol"]: r for r in summary(tmp_path / "out")["rows"]}
    for protocol in ("rest-h1", "rest-h2"):
        row = rows[protocol]
        assert row["n"] == 0 and row["errors_by_class"] == {"tls_untrusted": 6}, row
        assert "not signed by a CA the client trusts" in row["error_samples"]["tls_untrusted"]
