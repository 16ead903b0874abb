"""The libcurl engine (clients.curl.transport, clients.curl.engine) against the real servers.

uvicorn for HTTP/1.1, hypercorn for HTTP/2 (TLS and h2c) and HTTP/3 (QUIC); tiny asyncio
servers in-test for the cases no real server should produce (ALPN http/1.1 only, a body
cut short).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import ssl

import orjson
import pytest

from clients.base import (ConnectError, ConnectionLost, FallbackError, ServerError, Target,
                          clock_ns)
from clients.curl.transport import Curl1Transport, Curl2Transport, Curl3Transport, CurlTransport
from clients.curl.engine import ENGINES, engine_version
from clients.transport.wire import METER
from servers import core

EMBED = {"input": ["the quick brown fox", "jumps over"], "dimensions": 256,
         "model": "wirebench-embed-1", "wirebench": {"seed": 7}}
SMALL = {"input": ["x"], "dimensions": 8}
CHAT = {"messages": [{"role": "user", "content": "hello curl"}], "max_tokens": 12,
        "stream": True, "stream_options": {"include_usage": True},
        "wirebench": {"itl_ms": 1, "seed": 3}}

# cell -> (HTTP version, server kind, server flags, Target overrides)
CELLS = {
    "h1": ("1", "h1", [], {}),
    "h2": ("2", "h2", ["--h2c-port", "0"], {}),
    "h2c": ("2", "h2", ["--h2c-port", "0"], {"tls": False}),
    "h3": ("3", "h3", [], {}),
}
TRANSPORTS = {"1": Curl1Transport, "2": Curl2Transport, "3": Curl3Transport}


def cell_target(servers, tls_files, cell: str) -> Target:
    _, kind, flags, overrides = CELLS[cell]
    srv = servers.start(kind, extra=flags)
    port = srv.info["h2c_port"] if cell == "h2c" else srv.port
    return Target(port=port, ca=tls_files.ca, **overrides)


def client(servers, tls_files, cell: str, kind: str = "rest", **kw):
    return ENGINES[f"{kind}-h{CELLS[cell][0]}"](cell_target(servers, tls_files, cell), **kw)


def transport(servers, tls_files, cell: str, **kw) -> CurlTransport:
    kw.setdefault("reuse", True)
    return TRANSPORTS[CELLS[cell][0]](cell_target(servers, tls_files, cell), **kw)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ registry

def test_registry_and_version():
    assert set(ENGINES) == {"rest-h1", "rest-h2", "rest-h3", "sse-h1", "sse-h2", "sse-h3"}
    for pid, cls in ENGINES.items():
        assert cls.protocol == pid and cls.streaming == pid.startswith("sse")
        assert cls.transport_class.version == {"1": "1.1", "2": "2", "3": "3"}[pid[-1]]
    assert re.fullmatch(r"libcurl \d+\.\d+\.\d+ \(pycurl [\d.]+, .*nghttp2 [\d.]+, "
                        r"ngtcp2 [\d.]+, nghttp3 [\d.]+\)", engine_version()), engine_version()
    with pytest.raises(ValueError):
        Curl3Transport(Target(port=1, tls=False), reuse=True)


# ------------------------------------------------------------------ REST and SSE

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embeddings_are_the_cores_bytes(servers, tls_files, cell, encoding):
    request = {**EMBED, "encoding_format": encoding}
    expected = core.embed_batch(core.parse_embed_request(request)).tobytes()
    async with client(servers, tls_files, cell) as c:
        first = await c.embed(request)
        second = await c.embed(request)
    for r in (first, second):
        assert r.vectors.dtype.str == "<f4" and r.vectors.shape == (2, 256)
        assert r.vectors.tobytes() == expected
        assert r.server_time_us is not None and r.server_time_us > 0
        assert r.payload_up == len(orjson.dumps(request)) and r.payload_down > 2 * 256 * 4
        assert r.t_start_ns < r.t_first_byte_ns <= r.t_received_ns <= r.t_decoded_ns
        # The server's own time fits inside what the client saw (one clock, causality).
        assert r.t_first_byte_ns - r.t_start_ns >= r.server_time_us * 1000 * 0.5
    assert first.new_connection and first.connect_ns > 0
    assert not second.new_connection and second.connect_ns is None


@pytest.mark.parametrize("cell", ["h1", "h2", "h3"])
async def test_sse_tokens_indices_and_stamps(servers, tls_files, cell):
    params = core.parse_generate_request(CHAT, chat=True)
    async with client(servers, tls_files, cell, "sse") as c:
        r = await c.generate(CHAT)
    assert [t.index for t in r.tokens] == list(range(12))
    assert [t.text for t in r.tokens] == core.tokens_for(params)
    emits = [t.emit_ns for t in r.tokens]
    assert all(b > a for a, b in zip(emits, emits[1:]))
    assert all(t.recv_ns >= t.emit_ns for t in r.tokens)
    assert all(r.t_start_ns < t.emit_ns for t in r.tokens)
    assert r.t_first_byte_ns <= r.tokens[0].recv_ns <= r.t_end_ns
    assert r.usage is not None and r.usage["completion_tokens"] == 12


async def test_http_status_is_not_a_transport_error(servers, tls_files):
    tr = transport(servers, tls_files, "h2")
    try:
        ex = await tr.request(b"POST", b"/v1/nothing", [(b"content-type", b"application/json")],
                              b"{}")
        body, _ = await ex.read_body()
        await ex.aclose()
        assert ex.response.status == 404 and b"/v1/nothing" in body
        assert ex.response.header(b"content-type") == b"application/json"
        ex = await tr.request(b"GET", b"/health", [], b"")        # same handle, now a GET
        body, _ = await ex.read_body()
        await ex.aclose()
        assert ex.response.status == 200 and orjson.loads(body)["status"] == "ok"
    finally:
        await tr.close()
    async with client(servers, tls_files, "h1") as c:              # the client layer's job
        with pytest.raises(ServerError) as err:
            await c.embed({"input": "a", "dimensions": 0})
    assert err.value.status == 400


# ------------------------------------------------------------------ connection policy

@pytest.mark.parametrize("cell", ["h2", "h2c", "h3"])
async def test_concurrent_requests_share_one_multiplexed_connection(servers, tls_files, cell):
    async with client(servers, tls_files, cell) as c:
        results = await asyncio.gather(*(c.embed(SMALL) for _ in range(16)))
        again = await asyncio.gather(*(c.embed(SMALL) for _ in range(4)))
    assert sum(r.new_connection for r in results) == 1
    assert not any(r.new_connection for r in again)
    expected = core.embed_batch(core.parse_embed_request(SMALL)).tobytes()
    assert all(r.vectors.tobytes() == expected for r in results + again)


@pytest.mark.parametrize("cell", CELLS)
async def test_reuse_false_connects_every_time(servers, tls_files, cell):
    async with client(servers, tls_files, cell, reuse=False) as c:
        results = [await c.embed(SMALL) for _ in range(3)]
    assert [r.new_connection for r in results] == [True, True, True]
    assert all(r.connect_ns and r.connect_ns > 0 for r in results)


async def test_http1_pool_honours_max_connections(servers, tls_files):
    async with client(servers, tls_files, "h1", max_connections=2) as c:
        results = await asyncio.gather(*(c.embed(SMALL) for _ in range(8)))
    assert sum(r.new_connection for r in results) == 2
    async with client(servers, tls_files, "h1") as c:           # unlimited: one each
        results = await asyncio.gather(*(c.embed(SMALL) for _ in range(6)))
    assert sum(r.new_connection for r in results) == 6


# ------------------------------------------------------------------ curl's own timings

@pytest.mark.parametrize("cell", CELLS)
async def test_curl_phases_are_recorded_and_ordered(servers, tls_files, cell):
    tr = transport(servers, tls_files, cell)
    tls = cell != "h1" and cell != "h2c"
    end_gaps = []
    try:
        for new in (True, False, False, False, False, False):
            t0 = clock_ns()
            ex = await tr.request(b"POST", b"/v1/embeddings",
                                  [(b"content-type", b"application/json")],
                                  orjson.dumps(SMALL))
            _, t_end = await ex.read_body()
            t_after = clock_ns()
            await ex.aclose()
            p = ex.curl_phases
            assert set(p) == {"namelookup", "connect", "appconnect", "pretransfer",
                              "starttransfer", "total"}
            assert ex.response.new_connection is new
            chain = ["namelookup", "connect"] + (["appconnect"] if tls else [])
            chain += ["pretransfer", "starttransfer", "total"]
            values = [p[k] for k in chain]
            assert values == sorted(values), p
            assert p["starttransfer"] > 0
            if new:
                assert p["connect"] > 0 and (p["appconnect"] > 0) is tls
                assert ex.response.connect_ns == 1000 * p["appconnect" if tls else "connect"]
            # curl's zero comes after our t0 and it notes the first byte before our
            # header callback stamps it; it notes its end before read_body() returns.
            assert p["starttransfer"] * 1000 <= ex.response.t_first_byte_ns - t0
            assert p["total"] * 1000 <= t_after - t0
            end_gaps.append(p["total"] * 1000 - (t_end - t0))
    finally:
        await tr.close()
    # Its end is noted a little after the stamp of the data that completed the transfer:
    # within 50 us on the least disturbed of the requests (a preemption in between is
    # the machine, not the stamp).
    assert min(end_gaps) <= 50_000, end_gaps


# ------------------------------------------------------------------ failures

@pytest.fixture
async def alpn_http11_server(tls_files):
    """A TLS server that only speaks http/1.1 (ALPN) and answers a minimal response."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_files.cert, tls_files.key)
    ctx.set_alpn_protocols(["http/1.1"])

    async def handle(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    yield Target(port=server.sockets[0].getsockname()[1], ca=tls_files.ca)
    server.close()


async def test_http2_offered_http11_is_a_fallback(alpn_http11_server):
    async with ENGINES["rest-h2"](alpn_http11_server) as c:
        with pytest.raises(FallbackError, match="asked for HTTP/2, server answered HTTP/1.1"):
            await c.embed(SMALL)
    tr = Curl1Transport(dataclasses.replace(alpn_http11_server, tls=True), reuse=True)
    try:
        ex = await tr.request(b"GET", b"/", [], b"")
        assert (await ex.read_body())[0] == b"{}" and ex.response.status == 200
        await ex.aclose()
    finally:
        await tr.close()


async def test_h2c_to_an_http11_server_is_a_fallback(servers, tls_files):
    target = Target(port=servers.start("h1").port, tls=False)
    async with ENGINES["rest-h2"](target) as c:
        with pytest.raises(FallbackError):
            await c.embed(SMALL)


@pytest.mark.parametrize("version", ["1", "2", "3"])
async def test_closed_port_is_a_connect_error(tls_files, version):
    port = free_port(socket.SOCK_DGRAM if version == "3" else socket.SOCK_STREAM)
    async with ENGINES[f"rest-h{version}"](Target(port=port, ca=tls_files.ca)) as c:
        with pytest.raises(ConnectError, match="curl error"):
            await c.embed(SMALL)


async def test_untrusted_certificate_is_a_connect_error(servers, tls_files):
    target = Target(port=servers.start("h2", extra=["--h2c-port", "0"]).port)  # system CAs
    async with ENGINES["rest-h2"](target) as c:
        with pytest.raises(ConnectError):
            await c.embed(SMALL)


async def test_body_cut_short_is_connection_lost():
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"da")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    tr = Curl1Transport(Target(port=server.sockets[0].getsockname()[1]), reuse=True)
    try:
        ex = await tr.request(b"GET", b"/", [], b"")
        assert ex.response.status == 200
        with pytest.raises(ConnectionLost, match="curl error 18"):
            await ex.read_body()
        await ex.aclose()
    finally:
        await tr.close()
        server.close()


@pytest.mark.parametrize("cell", ["h1", "h2"])
async def test_leaving_a_stream_early_keeps_the_transport_usable(servers, tls_files, cell):
    tr = transport(servers, tls_files, cell)
    long_chat = {**CHAT, "max_tokens": 500, "wirebench": {"itl_ms": 5}}
    try:
        ex = await tr.request(b"POST", b"/v1/chat/completions",
                              [(b"content-type", b"application/json")], orjson.dumps(long_chat))
        async for chunk, _ in ex.body_chunks():
            if chunk:
                break
        await ex.aclose()                       # abandon mid-stream
        ex = await tr.request(b"GET", b"/health", [], b"")
        body, _ = await ex.read_body()
        await ex.aclose()
        assert ex.response.status == 200 and orjson.loads(body)["status"] == "ok"
        assert ex.response.new_connection is (cell == "h1")   # h1: that connection had to go
    finally:
        await tr.close()


async def test_cancelled_request_is_withdrawn(servers, tls_files):
    slow = {**CHAT, "wirebench": {"ttft_ms": 2000}}
    async with client(servers, tls_files, "h2", "sse") as c:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await c.generate(slow)
        assert not c.transport._active           # removed from the multi
        r = await c.generate(CHAT)
        assert len(r.tokens) == 12 and not r.new_connection


# ------------------------------------------------------------------ wire accounting

async def test_tcp_sockets_are_metered(servers, tls_files):
    before = METER.snapshot()
    async with client(servers, tls_files, "h1", reuse=False) as c:
        results = [await c.embed(EMBED) for _ in range(3)]
    after = METER.snapshot()
    payload_down = sum(r.payload_down for r in results)
    assert after["down"] - before["down"] >= payload_down
    assert after["up"] - before["up"] >= sum(r.payload_up for r in results)
    assert after["down_packets"] - before["down_packets"] >= 3 * 3     # SYN-ACK, data, FIN
    # Reused and still open: counted live by the snapshot, then kept at close.
    async with client(servers, tls_files, "h2") as c:
        await c.embed(EMBED)
        mid = METER.snapshot()
        assert mid["down"] - after["down"] >= results[0].payload_down
    end = METER.snapshot()
    assert end["down"] >= mid["down"]


# ------------------------------------------------------------------ uvloop

def test_runs_under_uvloop(servers, tls_files):
    uvloop = pytest.importorskip("uvloop")
    target = cell_target(servers, tls_files, "h2")
    expected = core.embed_batch(core.parse_embed_request(EMBED)).tobytes()

    async def main():
        async with ENGINES["rest-h2"](target) as c:
            rs = await asyncio.gather(*(c.embed(EMBED) for _ in range(8)))
        async with ENGINES["sse-h1"](cell_target(servers, tls_files, "h1")) as c:
            s = await c.generate(CHAT)
        return rs, s

    rs, s = uvloop.run(main())
    assert all(r.vectors.tobytes() == expected for r in rs)
    assert sum(r.new_connection for r in rs) == 1
    assert len(s.tokens) == 12


def test_idle_connections_closed_by_libcurl_leave_no_loop_registration(servers, tls_files):
    """libcurl closes idle connections on its own (here: older than MAXAGE_CONN, pruned
    about once a second) without a socket callback. The reader kept on them must go
    too: a loop registration must always name the socket it was made for, or the next
    file to get that fd number inherits it (uvloop aborts the process on that)."""
    uvloop = pytest.importorskip("uvloop")
    import os

    import pycurl

    class ShortLived(Curl1Transport):
        def _new_easy(self):
            easy = super()._new_easy()
            easy.setopt(pycurl.MAXAGE_CONN, 1)          # seconds idle before libcurl drops it
            return easy

    target = cell_target(servers, tls_files, "h1")

    def registrations_are_current(tr):
        for fd in tr._watch:
            try:
                if os.fstat(fd).st_ino != tr._ino[fd]:
                    return False
            except OSError:
                return False
        return True

    async def main():
        tr = ShortLived(target, reuse=True)
        loop = asyncio.get_running_loop()

        async def get():
            ex = await tr.request(b"GET", b"/health", [], b"")
            await ex.read_body()
            await ex.aclose()
            assert registrations_are_current(tr)
            return ex.response.new_connection

        try:
            first = await asyncio.gather(get(), get())      # two connections, then idle
            await asyncio.sleep(1.2)
            news = 0
            end = loop.time() + 1.5                         # past libcurl's next prune
            while loop.time() < end:
                news += await get()
                _, w = await asyncio.open_connection("127.0.0.1", target.port)
                news += await get()
                w.close()
                await asyncio.sleep(0.02)
        finally:
            await tr.close()
        return first, news

    first, news = uvloop.run(main())
    assert first == [True, True] and news >= 1
