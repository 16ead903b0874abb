"""TLS session resumption (HTTP/2 over TLS 1.2 and 1.3, hypercorn and granian) and QUIC
0-RTT (HTTP/3, hypercorn + aioquic) against
the real servers over real sockets: with Target.resumption every new connection after
the first really resumes (OpenSSL's `session_reused`, aioquic's `session_resumed` and
`early_data_accepted`), and without it none does."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from clients import open_client
from clients.base import Target
from clients.transport.http2 import Http2Transport
from clients.transport.http3 import Http3Transport
from servers.launcher import start_server

EMBED = {"model": "wirebench-embed-1", "input": ["alpha"], "dimensions": 16}
CHAT = {"model": "wirebench-fake-1", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4, "stream": True}
N = 4           # requests, each on its own new connection


@pytest.fixture(scope="module", params=[("h2", "1.2"), ("h2", "1.3"), ("granian-h2", "1.2"),
                                        ("granian-h2", "1.3")], ids=lambda p: "-".join(p))
def h2_server(request, tls_files):
    # hypercorn (Python's ssl, OpenSSL) and granian (rustls): both must issue sessions.
    kind, version = request.param
    with start_server(kind, extra=["--tls-version", version]) as srv:
        yield srv, version


@pytest.fixture(scope="module")
def h3_server(tls_files):
    with start_server("h3") as srv:
        yield srv


async def _results(protocol: str, target: Target) -> list:
    client = open_client(protocol, target, reuse=False)
    try:
        call = client.generate if protocol.startswith("sse") else client.embed
        return [await call(CHAT if protocol.startswith("sse") else EMBED) for _ in range(N)]
    finally:
        await client.close()


@pytest.mark.parametrize("protocol", ["rest-h2", "sse-h2"])
def test_tls_resumption_resumes_every_later_connection(h2_server, tls_files, protocol):
    srv, version = h2_server
    target = Target(port=srv.port, ca=tls_files.ca, tls_version=version,
                    resumption="session")
    results = asyncio.run(_results(protocol, target))
    assert all(r.new_connection for r in results)
    # The first connection has no session to offer; every later one resumes it.
    assert [r.extra["resumed"] for r in results] == ["full"] + ["session"] * (N - 1)


async def _h2_reused_flags(target: Target) -> list[bool]:
    """OpenSSL's own word, read from each connection's SSLObject while it is open."""
    transport = Http2Transport(target, reuse=False)
    flags = []
    try:
        for _ in range(N):
            stream = await transport.request(b"GET", b"/health", [], b"")
            flags.append(stream.conn.transport.get_extra_info("ssl_object").session_reused)
            await stream.read_body()
            await stream.aclose()
    finally:
        await transport.close()
    return flags


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_tls_session_reused_per_openssl(h2_server, tls_files, run):
    # Workers run uvloop, whose SSL layer is its own: the wrap_bio hook must hold there.
    srv, version = h2_server
    on = Target(port=srv.port, ca=tls_files.ca, tls_version=version, resumption="session")
    off = Target(port=srv.port, ca=tls_files.ca, tls_version=version)
    assert run(_h2_reused_flags(on)) == [False] + [True] * (N - 1)
    assert run(_h2_reused_flags(off)) == [False] * N


def test_without_resumption_nothing_is_reported_or_resumed(h2_server, tls_files):
    srv, version = h2_server
    results = asyncio.run(_results("rest-h2", Target(port=srv.port, ca=tls_files.ca,
                                                     tls_version=version)))
    assert all("resumed" not in r.extra for r in results)


@pytest.mark.parametrize("protocol", ["rest-h3", "sse-h3"])
def test_quic_zero_rtt_accepted(h3_server, tls_files, protocol):
    target = Target(port=h3_server.port, ca=tls_files.ca, resumption="0rtt")
    results = asyncio.run(_results(protocol, target))
    assert [r.extra["resumed"] for r in results] == ["full"] + ["0rtt"] * (N - 1)
    for r in results[1:]:
        phases = r.extra["phases"]
        # The request did not wait for a handshake: no appconnect, and it was written
        # before the first byte came back.
        assert phases["appconnect"] == 0
        assert 0 < phases["pretransfer"] < phases["starttransfer"]


def test_quic_session_resumption_without_early_data(h3_server, tls_files):
    target = Target(port=h3_server.port, ca=tls_files.ca, resumption="session")
    results = asyncio.run(_results("rest-h3", target))
    assert [r.extra["resumed"] for r in results] == ["full"] + ["session"] * (N - 1)
    for r in results[1:]:
        phases = r.extra["phases"]
        assert 0 < phases["appconnect"] <= phases["pretransfer"]   # waited for it


async def _h3_flags(target: Target) -> list[tuple[bool, bool]]:
    """aioquic's own word (HandshakeCompleted), per connection."""
    transport = Http3Transport(target, reuse=False)
    flags = []
    try:
        for _ in range(N):
            exchange = await transport.request(b"GET", b"/health", [], b"")
            await exchange.read_body()
            conn = exchange._conn
            flags.append((conn.session_resumed, conn.early_data_accepted))
            await exchange.aclose()
    finally:
        await transport.close()
    return flags


def test_quic_flags_per_aioquic(h3_server, tls_files):
    on = Target(port=h3_server.port, ca=tls_files.ca, resumption="0rtt")
    off = Target(port=h3_server.port, ca=tls_files.ca)
    assert asyncio.run(_h3_flags(on)) == [(False, False)] + [(True, True)] * (N - 1)
    assert asyncio.run(_h3_flags(off)) == [(False, False)] * N


async def _refused_early_data(first: Target, second: Target) -> tuple:
    """A ticket from one server offered to another (a restarted server, say): it knows
    no such ticket, refuses the early data, and the request must still be answered."""
    a, b = Http3Transport(first, reuse=False), Http3Transport(second, reuse=False)
    try:
        exchange = await a.request(b"GET", b"/health", [], b"")
        await exchange.read_body()
        await exchange.aclose()
        assert a._ticket is not None            # the first server issued one
        b._ticket = a._ticket
        exchange = await b.request(b"GET", b"/health", [], b"")
        body, _ = await exchange.read_body()
        response = exchange.response
        await exchange.aclose()
        return response.status, body, response.opened.resumed, response
    finally:
        await a.close()
        await b.close()


def test_quic_refused_early_data_is_resent_and_reported(h3_server, tls_files):
    with start_server("h3") as other:
        status, body, resumed, response = asyncio.run(_refused_early_data(
            Target(port=h3_server.port, ca=tls_files.ca, resumption="0rtt"),
            Target(port=other.port, ca=tls_files.ca, resumption="0rtt")))
    assert status == 200 and b"ok" in body.lower()
    assert resumed == "full"
    # The request counts as sent when the handshake ended (it was resent then).
    assert response.t_sent_ns >= response.opened.handshake
