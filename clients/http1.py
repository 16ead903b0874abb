"""HTTP/1.1 transport: a small asyncio Protocol around httptools' C parser.

Chosen over aiohttp and httpx on measurement (ANCHORS.md: against one server at c=1,
aiohttp reached 0.27x of wrk's throughput and httpx 0.09x; a minimal httptools client
0.53x). One request at a time per connection; with reuse, idle connections wait in a
pool and concurrent callers each get their own.
"""

from __future__ import annotations

import asyncio
import collections
import ssl

import httptools

from .base import ConnectError, ConnectionLost, FallbackError, ProtocolViolation, Target, clock_ns
from .http_api import Headers, HttpExchange, HttpResponse, HttpTransport, QueuedExchange
from .wire import METER


class _H1Protocol(asyncio.Protocol):
    """One connection; feeds bytes to httptools and hands events to the open exchange."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchange: "_H1Exchange | None" = None
        self.closed = False
        self._recv_ns = 0
        self._headers: Headers = []

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sock = transport.get_extra_info("socket")
        METER.track(self.sock)

    def data_received(self, data: bytes) -> None:
        self._recv_ns = clock_ns()          # one receive time for everything in this read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolViolation(f"bad HTTP/1.1 response: {exc}"))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        METER.closing(self.sock)            # a peer's close: counts kept if still readable
        if self.exchange is not None and not self.exchange.complete:
            self._fail(ConnectionLost(f"connection closed mid-response ({exc or 'EOF'})"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        ex = self.exchange
        if ex is None:
            return
        if self.parser.get_http_version() != "1.1":
            self._fail(FallbackError(f"server answered HTTP/{self.parser.get_http_version()}"))
            return
        ex.keep_alive = self.parser.should_keep_alive()
        ex.set_headers(self.parser.get_status_code(), self._headers, self._recv_ns)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.push(body, self._recv_ns)

    def on_message_complete(self) -> None:
        if self.exchange is not None:
            self.exchange.finish(self._recv_ns)

    def _fail(self, exc: Exception) -> None:
        if self.exchange is not None:
            self.exchange.fail(exc)


class _H1Exchange(QueuedExchange):
    def __init__(self, pool: "Http1Transport", conn: _H1Protocol, new: bool,
                 connect_ns: int | None) -> None:
        self.pool, self.conn = pool, conn
        self.new, self.connect_ns = new, connect_ns
        self.loop = asyncio.get_running_loop()
        self.headers_ready: asyncio.Future = self.loop.create_future()
        self.chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self.waiter: asyncio.Future | None = None
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None

    # called by the protocol
    def set_headers(self, status: int, headers: Headers, t: int) -> None:
        self.response = HttpResponse(status, headers, t, self.new, self.connect_ns)
        if not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def push(self, data: bytes, t: int) -> None:
        self.chunks.append((data, t))
        self._wake()

    def fail(self, exc: Exception) -> None:
        self.error = exc
        if not self.headers_ready.done():
            self.headers_ready.set_exception(exc)
        self._wake()

    # called by the client
    async def aclose(self) -> None:
        self.conn.exchange = None
        self.pool.release(self.conn, reusable=self.complete and self.keep_alive
                          and self.error is None)


class Http1Transport(HttpTransport):
    version = "1.1"

    def __init__(self, target: Target, *, reuse: bool, max_connections: int | None = None) -> None:
        super().__init__(target, reuse=reuse, max_connections=max_connections)
        self.idle: list[_H1Protocol] = []
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.open: set[_H1Protocol] = set()
        self._ssl: ssl.SSLContext | None = None
        if target.tls:
            from servers.tls import client_context  # noqa: PLC0415 (TLS is optional here)
            self._ssl = client_context(target.ca, ["http/1.1"])
        host = target.server_name if target.port in (80, 443) else target.authority
        self._host_line = b"host: " + host.encode() + b"\r\n"

    async def _connect(self) -> tuple[_H1Protocol, int]:
        t0 = clock_ns()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _H1Protocol, self.target.host, self.target.port, ssl=self._ssl,
                server_hostname=self.target.server_name if self._ssl else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"HTTP/1.1 connect to {self.target.host}:{self.target.port} "
                               f"failed: {exc}") from exc
        if self._ssl is not None:
            alpn = conn.transport.get_extra_info("ssl_object").selected_alpn_protocol()
            if alpn not in (None, "http/1.1"):
                conn.transport.close()
                raise FallbackError(f"asked for http/1.1, server selected {alpn!r}")
        self.open.add(conn)
        return conn, clock_ns() - t0

    async def request(self, method: bytes, path: bytes, headers: Headers,
                      body: bytes) -> HttpExchange:
        conn, new, connect_ns = None, False, None
        limit = self.max_connections
        while limit and not self.idle and len(self.open) >= limit:
            fut = asyncio.get_running_loop().create_future()
            self.waiting.append(fut)        # queue for a free connection (latency counts it)
            await fut
        while self.idle:
            candidate = self.idle.pop()
            if not candidate.closed:
                conn = candidate
                break
            self.open.discard(candidate)    # lost while idle: no longer counts
        if conn is None:
            conn, connect_ns = await self._connect()
            new = True
        exchange = _H1Exchange(self, conn, new, connect_ns)
        conn.exchange = exchange
        head = [method, b" ", path, b" HTTP/1.1\r\n", self._host_line]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        conn.transport.write(b"".join(head) + body)
        try:
            await exchange.headers_ready
        except BaseException:
            await exchange.aclose()
            raise
        return exchange

    def release(self, conn: _H1Protocol, *, reusable: bool) -> None:
        if self.reuse and reusable and not conn.closed:
            self.idle.append(conn)
        else:
            self.open.discard(conn)
            if not conn.closed:
                METER.closing(conn.sock)
                conn.transport.close()
        while self.waiting:                 # one queued caller may go now
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    async def close(self) -> None:
        for conn in list(self.open):
            if not conn.closed:
                METER.closing(conn.sock)
                conn.transport.close()
        self.open.clear()
        self.idle.clear()
        await asyncio.sleep(0)      # let connection_lost callbacks run
