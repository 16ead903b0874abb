"""granian serving the same ASGI app (kinds granian-h1, granian-h2): same answers as
uvicorn / hypercorn through the project's own clients, its worker processes reported
for CPU accounting, and none of them left after a stop."""

from __future__ import annotations

import orjson
import pytest

from clients import open_client
from clients.base import FallbackError, Target
from clients.transport.http1 import Http1Transport
from clients.transport.http2 import Http2Transport
from harness.measure.cpu import process_cpu_s
from servers import core
from servers.http import granian_server
from servers.launcher import ServerStartError, start_server
from tests.processes import gone

EMBED = {"input": [f"text {i}" for i in range(8)], "dimensions": 1536, "model": "wirebench-embed-1"}
SMALL = {"input": ["text 0"], "dimensions": 8, "model": "wirebench-embed-1"}
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 12, "stream": True,
        "stream_options": {"include_usage": True}, "wirebench": {"itl_ms": 1}}

# listener -> (server kind, protocol suffix, Target overrides)
LISTENERS = {
    "h1": ("granian-h1", "h1", {}),
    "h2": ("granian-h2", "h2", {}),
    "h2c": ("granian-h2", "h2", {"tls": False}),
}
TRANSPORTS = {"h1": Http1Transport, "h2": Http2Transport, "h2c": Http2Transport}
LIMIT_FLAGS = ["--max-batch", "4", "--max-body-bytes", "4096"]


def flags_for(kind: str, extra: list[str] = ()) -> list[str]:
    return [*extra, "--h2c-port", "0"] if kind == "granian-h2" else list(extra)


def listener(servers, tls_files, name: str, extra: list[str] = ()):
    kind, _, overrides = LISTENERS[name]
    srv = servers.start(kind, extra=flags_for(kind, extra))
    port = srv.info["h2c_port"] if name == "h2c" else srv.port
    return Target(port=port, ca=tls_files.ca, **overrides), srv


@pytest.mark.parametrize("name", LISTENERS)
@pytest.mark.parametrize("request_body", [SMALL, EMBED, {**EMBED, "encoding_format": "base64"}],
                         ids=["small", "embed", "embed-base64"])
async def test_embeddings_are_the_cores_vectors(servers, tls_files, name, request_body):
    target, srv = listener(servers, tls_files, name)
    assert srv.info["server"] == "granian"
    expected = core.embed_batch(core.parse_embed_request(request_body))
    async with open_client(f"rest-{LISTENERS[name][1]}", target) as client:
        results = [await client.embed(request_body) for _ in range(3)]
    for result in results:
        assert result.vectors.tobytes() == expected.tobytes()
        assert result.server_time_us is not None and result.server_time_us > 0
        assert result.t_start_ns < result.t_first_byte_ns <= result.t_received_ns
    assert [r.new_connection for r in results] == [True, False, False]   # keep-alive


@pytest.mark.parametrize("name", LISTENERS)
async def test_sse_stream_tokens_and_stamps(servers, tls_files, name):
    target, _ = listener(servers, tls_files, name)
    params = core.parse_generate_request(CHAT, chat=True)
    async with open_client(f"sse-{LISTENERS[name][1]}", target) as client:
        result = await client.generate(CHAT)
    assert [t.index for t in result.tokens] == list(range(12))
    assert [t.text for t in result.tokens] == core.tokens_for(params)
    emits = [t.emit_ns for t in result.tokens]
    assert emits == sorted(emits) and len(set(emits)) == len(emits)
    assert all(t.recv_ns > t.emit_ns for t in result.tokens)
    assert result.usage == {"prompt_tokens": 2, "completion_tokens": 12, "total_tokens": 14}
    assert result.server_time_us >= 11 * 1000                    # 11 gaps of 1 ms


async def test_ready_info_names_the_protocols(servers, tls_files):
    h1 = servers.start("granian-h1")
    h2 = servers.start("granian-h2", extra=flags_for("granian-h2"))
    assert h1.info["http"] == "1.1" and "tls" not in h1.info and "h2c_port" not in h1.info
    assert h2.info["http"] == "2" and h2.info["tls"] is True and h2.info["h2c_port"] > 0


async def test_h1_listener_is_not_mistaken_for_h2c(servers, tls_files):
    # (ALPN h2 on granian-h2 is checked by every rest-h2/sse-h2 call above: the client
    # raises FallbackError on anything else.)
    h1 = servers.start("granian-h1")
    async with open_client("rest-h2", Target(port=h1.port, tls=False)) as client:
        with pytest.raises(FallbackError):
            await client.embed(SMALL)


async def raw(transport, method: bytes, path: bytes, body: bytes = b""):
    exchange = await transport.request(method, path, [(b"content-type", b"application/json")],
                                       body)
    data, _ = await exchange.read_body()
    await exchange.aclose()
    return exchange.response, data


BAD = [
    (b"{not json", b"/v1/embeddings", b"POST", 400),
    (b'{"input": 12}', b"/v1/embeddings", b"POST", 400),
    (b'{"input": "a", "dimensions": 0}', b"/v1/embeddings", b"POST", 400),
    (orjson.dumps({"input": ["a"] * 5}), b"/v1/embeddings", b"POST", 413),
    (orjson.dumps({"input": "a" * 5000}), b"/v1/embeddings", b"POST", 413),
    (b"", b"/v1/nothing", b"POST", 404),
    (b"", b"/v1/embeddings", b"GET", 405),
]


@pytest.mark.parametrize("name", LISTENERS)
@pytest.mark.parametrize("body, path, method, status", BAD,
                         ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)])
async def test_bad_input_gets_uvicorns_error_body(servers, tls_files, name, body, path,
                                                  method, status):
    uvicorn = servers.start("h1", extra=LIMIT_FLAGS)
    reference = Http1Transport(Target(port=uvicorn.port), reuse=True)
    target, _ = listener(servers, tls_files, name, LIMIT_FLAGS)
    transport = TRANSPORTS[name](target, reuse=True)
    try:
        ref_resp, ref_data = await raw(reference, method, path, body)
        resp, data = await raw(transport, method, path, body)
        assert ref_resp.status == status
        assert resp.status == status and data == ref_data
        assert dict(resp.headers)[b"content-type"] == b"application/json"
        # ... and the same connection still serves a good request.
        resp, data = await raw(transport, b"POST", b"/v1/embeddings",
                               b'{"input": "ok", "dimensions": 4}')
        assert resp.status == 200 and len(orjson.loads(data)["data"][0]["embedding"]) == 4
    finally:
        await transport.close()
        await reference.close()


@pytest.mark.parametrize("kind", ["granian-h1", "granian-h2"])
async def test_worker_cpu_is_reported_and_every_pid_stops(tls_files, kind):
    srv = start_server(kind, extra=flags_for(kind))
    try:
        pids = srv.info["pids"]
        assert pids[0] == srv.pid and len(set(pids)) == len(pids)
        assert len(pids) == (5 if kind == "granian-h2" else 3)   # serving, supervisor(s), worker(s)
        before = {pid: process_cpu_s(pid) for pid in pids}
        name = "h1" if kind == "granian-h1" else "h2"
        target = Target(port=srv.port, ca=tls_files.ca)
        async with open_client(f"rest-{LISTENERS[name][1]}", target) as client:
            for _ in range(50):
                await client.embed(EMBED)
        used = {pid: process_cpu_s(pid) - before[pid] for pid in pids}
        # The work happens in granian's worker, not in the process the launcher started:
        # reading the launched PID alone would miss nearly all of the server's CPU.
        assert sum(used.values()) > 5 * used[srv.pid]
    finally:
        srv.stop()
    assert not srv.alive()
    assert all(gone(pid) for pid in pids), [p for p in pids if not gone(p, 0)]


def test_h2c_port_is_refused_on_granian_h1(tls_files):
    with pytest.raises(ServerStartError, match="h2c"):
        start_server("granian-h1", extra=["--h2c-port", "0"], timeout_s=20)


@pytest.mark.parametrize("kind", ["granian-h1", "granian-h2"])
def test_a_stop_right_after_ready_is_prompt(tls_files, kind):
    # Ready is reported only once the worker's loop runs (its SIGTERM handler is set):
    # before, a stop waited out granian's kill timeout.
    import time

    srv = start_server(kind, extra=flags_for(kind))
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 2.0
    assert all(gone(pid) for pid in srv.info["pids"])


def test_the_factory_builds_the_app_from_the_environment(monkeypatch):
    limits = core.Limits(max_body_bytes=1234, max_batch=3, max_tokens=9)
    monkeypatch.setenv(granian_server.APP_ENV, granian_server.app_env(limits, "k"))
    app = granian_server.app_from_env()
    assert app.limits == limits and app._auth == b"Bearer k"
    monkeypatch.delenv(granian_server.APP_ENV)
    app = granian_server.app_from_env()
    assert app.limits == core.Limits() and app._auth is None


@pytest.mark.parametrize("kind", ["granian-h1", "granian-h2"])
async def test_api_key_is_required_as_on_uvicorn(servers, tls_files, kind):
    uvicorn = servers.start("h1", api_key="secret")
    srv = servers.start(kind, api_key="secret")
    body = b'{"input": "a", "dimensions": 4}'
    reference = Http1Transport(Target(port=uvicorn.port), reuse=True)
    transport = (Http1Transport if kind == "granian-h1" else Http2Transport)(
        Target(port=srv.port, ca=tls_files.ca, api_key="secret"), reuse=True)
    try:
        ref_resp, ref_data = await raw(reference, b"POST", b"/v1/embeddings", body)
        resp, data = await raw(transport, b"POST", b"/v1/embeddings", body)
        assert ref_resp.status == resp.status == 401 and data == ref_data
    finally:
        await transport.close()
        await reference.close()
    async with open_client("rest-h1" if kind == "granian-h1" else "rest-h2",
                           Target(port=srv.port, ca=tls_files.ca, api_key="secret")) as client:
        assert (await client.embed(SMALL)).vectors.shape == (1, 8)


def test_the_whole_tree_dies_with_a_sigkilled_launcher(tls_files):
    # launcher -> serving process -> granian supervisors -> granian workers
    import json
    import signal
    import subprocess
    import sys

    from base.paths import PACKAGE_ROOT as ROOT

    script = ("import sys, json; sys.path.insert(0, %r)\n"
              "from servers.launcher import start_server\n"
              "s = start_server('granian-h2', extra=['--h2c-port', '0'])\n"
              "print(json.dumps(s.info['pids']), flush=True)\n"
              "import time; time.sleep(60)\n") % str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert len(pids) == 5
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert all(gone(pid) for pid in pids)
