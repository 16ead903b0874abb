"""HttpTransport.fetch, the unary path (one wakeup per request, at the end of the body),
against small in-test HTTP/1.1 servers for the answers no real server should give, for
the Python transport and libcurl's; and the same answers as request()/read_body().
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from clients.base import ConnectionLost, ProtocolViolation, Target
from clients.curl.transport import Curl1Transport
from clients.transport.http1 import Http1Transport

TRANSPORTS = {"python": Http1Transport, "curl": Curl1Transport}
OK = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
      b"server-timing: app;dur=0.250\r\ncontent-length: 2\r\n\r\n{}")


class Server:
    """An asyncio server whose connections all end with the test (no socket left to the
    garbage collector, which other tests count)."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.writers: list = []
        self.tasks: list = []

    async def start(self) -> int:
        async def tracked(reader, writer):
            self.writers.append(writer)
            self.tasks.append(asyncio.current_task())
            await self.handle(reader, writer)

        self.server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def serve(answers: list[bytes], close_after: bool = False):
    """A server that answers each request on a connection with the next answer."""
    seen: list[bytes] = []

    async def handle(reader, writer):
        try:
            for answer in answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length:
                    await reader.readexactly(length[0])
                seen.append(head)
                writer.write(answer)
                await writer.drain()
                if close_after:
                    await asyncio.sleep(0.02)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = Server(handle)
    return server, await server.start(), seen


async def fetch(transport, path=b"/v1/embeddings"):
    return await transport.fetch(b"POST", path, [(b"content-type", b"application/json")],
                                 orjson.dumps({"input": ["x"]}))


@pytest.mark.parametrize("engine", TRANSPORTS)
async def test_fetch_matches_request_and_read_body(engine):
    server, port, seen = await serve([OK, OK, OK])
    tr = TRANSPORTS[engine](Target(port=port), reuse=True)
    try:
        resp, raw, t_end, _ = await fetch(tr)
        assert resp.status == 200 and raw == b"{}" and resp.new_connection
        assert resp.header(b"server-timing") == b"app;dur=0.250"
        assert resp.header(b"content-type") == b"application/json"
        assert resp.header(b"x-missing") is None
        assert dict(resp.headers)[b"content-length"] == b"2"
        assert resp.t_first_byte_ns <= t_end
        ex = await tr.request(b"GET", b"/", [], b"")
        body, t_end2 = await ex.read_body()
        await ex.aclose()
        assert body == raw and ex.response.status == 200
        assert ex.response.headers == resp.headers
        resp3, _, _, _ = await fetch(tr)                 # the same connection throughout
        assert not resp3.new_connection
    finally:
        await tr.close()
        await server.close()
    assert len(seen) == 3


@pytest.mark.parametrize("engine", TRANSPORTS)
async def test_interim_100_then_final_response(engine):
    server, port, _ = await serve([b"HTTP/1.1 100 Continue\r\n\r\n" + OK])
    tr = TRANSPORTS[engine](Target(port=port), reuse=True)
    try:
        resp, raw, _, _ = await fetch(tr)       # the interim block is skipped
        assert resp.status == 200 and raw == b"{}"
        assert resp.header(b"server-timing") == b"app;dur=0.250"
    finally:
        await tr.close()
        await server.close()


@pytest.mark.parametrize("engine", TRANSPORTS)
async def test_chunked_body_with_trailers(engine):
    answer = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n"
              b"server-timing: app;dur=1\r\n\r\n"
              b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n")
    server, port, _ = await serve([answer, OK])
    tr = TRANSPORTS[engine](Target(port=port), reuse=True)
    try:
        resp, raw, _, _ = await fetch(tr)
        assert resp.status == 200 and raw == b"abcde"
        assert resp.header(b"server-timing") == b"app;dur=1"
        assert resp.header(b"x-t") is None              # trailers are not headers
        resp, raw, _, _ = await fetch(tr)
        assert raw == b"{}"
    finally:
        await tr.close()
        await server.close()


@pytest.mark.parametrize("engine", TRANSPORTS)
async def test_body_cut_short_is_connection_lost(engine):
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"da"
    server, port, _ = await serve([answer], close_after=True)
    tr = TRANSPORTS[engine](Target(port=port), reuse=True)
    try:
        with pytest.raises(ConnectionLost, match="curl error 18" if engine == "curl" else None):
            await fetch(tr)
    finally:
        await tr.close()
        await server.close()


@pytest.mark.parametrize("engine", TRANSPORTS)
async def test_garbage_status_line_is_a_protocol_violation(engine):
    server, port, _ = await serve([b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n"],
                                  close_after=True)
    tr = TRANSPORTS[engine](Target(port=port), reuse=True)
    try:
        with pytest.raises((ProtocolViolation, ConnectionLost)):
            await fetch(tr)
    finally:
        await tr.close()
        await server.close()


@pytest.mark.parametrize("engine", TRANSPORTS)
async def test_server_closing_after_each_answer(engine):
    close = OK.replace(b"content-length: 2", b"connection: close\r\ncontent-length: 2")
    server, port, _ = await serve([close], close_after=True)
    tr = TRANSPORTS[engine](Target(port=port), reuse=True)
    try:
        for _ in range(3):              # each on a new connection, none lost on the way
            resp, raw, _, _ = await fetch(tr)
            assert resp.status == 200 and raw == b"{}" and resp.new_connection
    finally:
        await tr.close()
        await server.close()


@pytest.mark.parametrize("engine", TRANSPORTS)
async def test_cancelled_fetch_leaves_the_transport_usable(engine):
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = [int(x.split(b":")[1]) for x in head.split(b"\r\n")
                     if x.lower().startswith(b"content-length:")]
                await reader.readexactly(n[0] if n else 0)
                if b"/slow" in head:
                    await asyncio.sleep(1)
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = Server(handle)
    tr = TRANSPORTS[engine](Target(port=await server.start()), reuse=True)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await fetch(tr, b"/slow")
        resp, raw, _, _ = await fetch(tr)
        assert resp.status == 200 and raw == b"{}"
    finally:
        await tr.close()
        await server.close()
