"""Caddy in front of the ASGI app (kinds caddy-h1, caddy-h2, caddy-h3): the same answers
as the Python servers through both client engines, SSE flushed per event, the
negotiated protocol checked, both processes reported and stopped."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys

import pytest

from clients import open_client
from clients.base import Target
from clients.transport.wire import _tcp_info
from harness.measure.cpu import process_cpu_s
from servers import core
from base.paths import PACKAGE_ROOT as ROOT
from servers.launcher import start_server
from tests.processes import gone

EMBED = {"input": [f"text {i}" for i in range(8)], "dimensions": 1536, "model": "wirebench-embed-1"}
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 12, "stream": True,
        "wirebench": {"itl_ms": 20}}

# listener -> (server kind, protocol suffix, Target overrides)
LISTENERS = {
    "h1": ("caddy-h1", "h1", {}),
    "h2": ("caddy-h2", "h2", {}),
    "h2c": ("caddy-h2", "h2", {"tls": False}),
    "h3": ("caddy-h3", "h3", {}),
}


def listener(servers, tls_files, name: str):
    kind, _, overrides = LISTENERS[name]
    srv = servers.start(kind, extra=["--h2c-port", "0"] if kind == "caddy-h2" else None)
    port = srv.info["h2c_port"] if name == "h2c" else srv.port
    return Target(port=port, ca=tls_files.ca, **overrides), srv


@pytest.mark.parametrize("engine", ["python", "curl"])
@pytest.mark.parametrize("name", LISTENERS)
async def test_embeddings_through_caddy_are_the_cores_vectors(servers, tls_files, name, engine):
    target, srv = listener(servers, tls_files, name)
    assert srv.info["server"] == "caddy"
    expected = core.embed_batch(core.parse_embed_request(EMBED))
    async with open_client(f"rest-{LISTENERS[name][1]}", target, engine=engine) as client:
        results = [await client.embed(EMBED) for _ in range(3)]
    for result in results:
        assert result.vectors.tobytes() == expected.tobytes()
        # Server-Timing crosses the front unchanged: overhead = latency - server time.
        assert result.server_time_us is not None and result.server_time_us > 0
    assert [r.new_connection for r in results] == [True, False, False]   # kept alive


@pytest.mark.parametrize("engine", ["python", "curl"])
@pytest.mark.parametrize("name", ["h1", "h2", "h3"])
async def test_sse_through_caddy_is_flushed_per_event(servers, tls_files, name, engine):
    target, _ = listener(servers, tls_files, name)
    params = core.parse_generate_request(CHAT, chat=True)
    async with open_client(f"sse-{LISTENERS[name][1]}", target, engine=engine) as client:
        result = await client.generate(CHAT)
    assert [t.text for t in result.tokens] == core.tokens_for(params)
    # Tokens are emitted every 20 ms; a front that buffered would deliver them together.
    gaps = [(b.recv_ns - a.recv_ns) / 1e6 for a, b in zip(result.tokens, result.tokens[1:])]
    assert sorted(gaps)[len(gaps) // 2] > 10, gaps
    assert all(0 < (t.recv_ns - t.emit_ns) / 1e6 < 15 for t in result.tokens)


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one HTTP/1.1 request, read its whole response (Content-Length framed); the
    response head."""
    sock.sendall(request)
    got = b""
    while b"\r\n\r\n" not in got:
        got += _recv(sock)
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: *(\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        body += _recv(sock)
    return head


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise AssertionError("Caddy closed the connection")
    return chunk


def test_a_unary_response_leaves_caddy_in_one_write(servers):
    """Headers and body in one TCP data segment, as a production Caddy sends them: a
    front that flushed its headers first would wake the client twice per response and
    put a second packet on every HTTP version's wire (the SSE test above shows events
    still go out one by one)."""
    srv = servers.start("caddy-h1")
    body = json.dumps({"input": ["hi"], "dimensions": 8, "model": "wirebench-embed-1"}).encode()
    request = (b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\n"
               b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
               % (len(body), body))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        assert _exchange(sock, request).startswith(b"HTTP/1.1 200")   # the hop is warm
        before = _tcp_info(sock)[5]                         # data segments received
        for _ in range(20):
            _exchange(sock, request)
        assert _tcp_info(sock)[5] - before == 20


def test_ready_info_and_both_processes_do_work(tls_files):
    srv = start_server("caddy-h3")
    try:
        assert srv.info["http"] == "3" and srv.info["tls"] is True
        pids = srv.info["pids"]
        assert pids[0] == srv.pid and len(pids) == 2
        before = {pid: process_cpu_s(pid) for pid in pids}
        out = subprocess.run(
            [sys.executable, "-c",
             "import pycurl,io,sys\n"
             "for _ in range(20):\n"
             " c=pycurl.Curl(); b=io.BytesIO()\n"
             f" c.setopt(pycurl.URL,'https://localhost:{srv.port}/health')\n"
             f" c.setopt(pycurl.CAINFO,{str(tls_files.ca)!r})\n"
             " c.setopt(pycurl.HTTP_VERSION,pycurl.CURL_HTTP_VERSION_3ONLY)\n"
             " c.setopt(pycurl.WRITEDATA,b); c.perform()\n"
             " assert c.getinfo(pycurl.INFO_HTTP_VERSION)==30\n"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        used = {pid: process_cpu_s(pid) - before[pid] for pid in pids}
        assert all(v > 0 for v in used.values()), used      # front and backend both worked
    finally:
        srv.stop()
    assert all(gone(pid) for pid in pids)


def test_caddy_dies_with_a_sigkilled_launcher(tls_files):
    script = ("import sys, json; sys.path.insert(0, %r)\n"
              "from servers.launcher import start_server\n"
              "s = start_server('caddy-h2')\n"
              "print(json.dumps(s.info['pids']), flush=True)\n"
              "import time; time.sleep(60)\n") % str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert len(pids) == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert all(gone(pid, 10) for pid in pids)
