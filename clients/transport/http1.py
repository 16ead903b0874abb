"""HTTP/1.1 transport: a small asyncio Protocol around httptools' C parser.

Chosen over aiohttp and httpx on measurement (ANCHORS.md: against one server at c=1,
aiohttp reached 0.27x of wrk's throughput and httpx 0.09x; a minimal httptools client
0.53x). One request at a time per connection; with reuse, idle connections wait in a
pool and concurrent callers each get their own.

`fetch()`, the unary path, takes an idle connection without an await, writes the
request head cached from the last request (the same method, path and headers every
time) and wakes its caller once, when the message is complete. Interim 1xx responses
are skipped: the exchange gets the final one.
"""

from __future__ import annotations

import asyncio
import collections
import ssl

import httptools

from clients.transport.phases import ConnectStamps, HostResolver
from clients.base import ConnectionLost, FallbackError, ProtocolViolation, Target, clock_ns
from clients.transport.connect import open_connection
from clients.http_api import (Headers, HttpExchange, HttpResponse, HttpTransport, QueuedExchange,
                       socket_port)
from clients.transport.wire import METER
from base.client_tls import resumption_outcome


class RequestHead:
    """A request's bytes, the head up to content-length cached for the last (method,
    path, headers): a client sends the same ones request after request."""

    __slots__ = ("_host_line", "_key", "_head")

    def __init__(self, host_line: bytes) -> None:
        self._host_line = host_line
        self._key: tuple[bytes, bytes, Headers] | None = None
        self._head = b""

    def request(self, method: bytes, path: bytes, headers: Headers, body: bytes) -> bytes:
        key = self._key
        if key is None or key[2] is not headers or key[0] != method or key[1] != path:
            head = [method, b" ", path, b" HTTP/1.1\r\n", self._host_line]
            for name, value in headers:
                head += [name, b": ", value, b"\r\n"]
            self._head = b"".join(head)
            self._key = (method, path, headers)
        return b"%scontent-length: %d\r\n\r\n%s" % (self._head, len(body), body)


class _H1Protocol(asyncio.Protocol):
    """One connection; feeds bytes to httptools and hands events to the open exchange."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchange: "_H1Exchange | None" = None
        self.closed = False
        self.local_port: int | None = None
        self._recv_ns = 0
        self._headers: Headers = []
        self._interim = False               # inside a 1xx response: not the exchange's
        self.stamps: ConnectStamps | None = None    # how opening it went (phases)

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sock = transport.get_extra_info("socket")
        self.local_port = socket_port(transport)
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

    # httptools callbacks (no on_message_begin: the header list is handed over, and a
    # new one started, at the end of each header block)
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        headers, self._headers = self._headers, []
        ex = self.exchange
        if ex is None:
            return
        parser = self.parser
        version = parser.get_http_version()
        if version != "1.1":
            self._fail(FallbackError(f"server answered HTTP/{version}"))
            return
        status = parser.get_status_code()
        if status < 200:                    # interim (100 Continue...): the final follows
            self._interim = True
            return
        ex.keep_alive = parser.should_keep_alive()
        ex.set_headers(status, headers, self._recv_ns)

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            if ex.whole:
                ex.parts.append(body)
            else:
                ex.push(body, self._recv_ns)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif self.exchange is not None:
            self.exchange.finish(self._recv_ns)

    def _fail(self, exc: Exception) -> None:
        if self.exchange is not None:
            self.exchange.fail(exc)


class _H1Exchange(QueuedExchange):
    """request(): `headers_ready` resolves with the headers and the body streams through
    `chunks`; fetch() (`whole`): it resolves once, at the end, the body in `parts`."""

    # Defaults as class attributes: a request's exchange sets only what it changes.
    waiter: asyncio.Future | None = None
    complete = False
    keep_alive = False
    error: Exception | None = None
    t_end = 0

    def __init__(self, pool: "Http1Transport", conn: _H1Protocol, new: bool,
                 connect_ns: int | None, whole: bool = False) -> None:
        self.pool, self.conn = pool, conn
        self.new, self.connect_ns = new, connect_ns
        self.loop = pool.loop
        self.headers_ready: asyncio.Future = self.loop.create_future()
        self.whole = whole
        if whole:
            self.parts: list[bytes] = []
        else:
            self.chunks: collections.deque[tuple[bytes, int]] = collections.deque()

    # called by the protocol
    def set_headers(self, status: int, headers: Headers, t: int) -> None:
        self.response = HttpResponse(status, headers, t, self.new, self.connect_ns,
                                     self.conn.local_port)
        if not self.whole and not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def push(self, data: bytes, t: int) -> None:
        self.chunks.append((data, t))
        self._wake()

    def finish(self, t: int) -> None:
        if self.whole:
            self.complete = True
            self.t_end = t
            if not self.headers_ready.done():
                self.headers_ready.set_result(None)
        else:
            super().finish(t)

    def fail(self, exc: Exception) -> None:
        self.error = exc
        if not self.headers_ready.done():
            self.headers_ready.set_exception(exc)
        if not self.whole:
            self._wake()

    # called by the client
    def release(self) -> None:
        self.conn.exchange = None
        self.pool.release(self.conn, reusable=self.complete and self.keep_alive
                          and self.error is None)

    async def aclose(self) -> None:
        self.release()


class Http1Transport(HttpTransport):
    version = "1.1"

    def __init__(self, target: Target, *, reuse: bool, max_connections: int | None = None) -> None:
        super().__init__(target, reuse=reuse, max_connections=max_connections)
        self._hosts = HostResolver(target)
        self.idle: list[_H1Protocol] = []
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.open: set[_H1Protocol] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | None = None
        if target.tls:
            from base.client_tls import client_context  # noqa: PLC0415 (TLS is optional here)
            self._ssl = client_context(target.ca, ["http/1.1"], target.tls_version,
                                       resume=target.resumption is not None)
        host = target.server_name if target.port in (80, 443) else target.authority
        self._head = RequestHead(b"host: " + host.encode() + b"\r\n")

    async def _connect(self) -> tuple[_H1Protocol, int]:
        t0 = clock_ns()
        stamps = ConnectStamps(t0)
        address = await self._hosts.address(stamps)   # the lab's DNS step
        target = self.target
        # TCP, then TLS over it: each step stamped, each failure its own error class.
        conn = await open_connection(_H1Protocol, address, target.port, ctx=self._ssl,
                                     server_name=target.server_name, stamps=stamps,
                                     timeout_s=target.connect_timeout_s, label="HTTP/1.1",
                                     host=target.host)
        conn.stamps = stamps
        stamps.resumed = resumption_outcome(self._ssl, conn.transport)   # if asked for
        if self._ssl is not None:
            alpn = conn.transport.get_extra_info("ssl_object").selected_alpn_protocol()
            if alpn not in (None, "http/1.1"):
                conn.transport.close()
                raise FallbackError(f"asked for http/1.1, server selected {alpn!r}")
        self.open.add(conn)
        return conn, clock_ns() - t0

    def _idle(self) -> _H1Protocol | None:
        """A live idle connection, if one is waiting (the reuse fast path: no await)."""
        idle = self.idle
        while idle:
            candidate = idle.pop()
            if not candidate.closed:
                return candidate
            self.open.discard(candidate)    # lost while idle: no longer counts
        return None

    async def _acquire(self) -> tuple[_H1Protocol, bool, int | None]:
        """A connection for one request: an idle one, a new one, or, at max_connections,
        the next one released (queued callers wait; their latency counts it)."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        limit = self.max_connections
        while limit and not self.idle and len(self.open) >= limit:
            fut = self.loop.create_future()
            self.waiting.append(fut)
            await fut
        conn = self._idle()
        if conn is not None:
            return conn, False, None
        conn, connect_ns = await self._connect()
        return conn, True, connect_ns

    def _send(self, conn: _H1Protocol, method: bytes, path: bytes, headers: Headers,
              body: bytes) -> None:
        conn.transport.write(self._head.request(method, path, headers, body))

    async def request(self, method: bytes, path: bytes, headers: Headers,
                      body: bytes) -> HttpExchange:
        conn, new, connect_ns = await self._acquire()
        exchange = _H1Exchange(self, conn, new, connect_ns)
        conn.exchange = exchange
        self._send(conn, method, path, headers, body)
        t_sent = clock_ns()
        try:
            await exchange.headers_ready
        except BaseException:
            await exchange.aclose()
            raise
        response = exchange.response
        response.t_sent_ns = t_sent
        if new:
            response.opened = conn.stamps
        return exchange

    async def fetch(self, method: bytes, path: bytes, headers: Headers,
                    body: bytes) -> tuple[HttpResponse, bytes, int, None]:
        conn = self._idle() if self.loop is not None else None
        if conn is None:
            conn, new, connect_ns = await self._acquire()
        else:
            new, connect_ns = False, None
        exchange = _H1Exchange(self, conn, new, connect_ns, True)
        conn.exchange = exchange
        self._send(conn, method, path, headers, body)
        t_sent = clock_ns()                     # curl's pretransfer: request written
        try:
            await exchange.headers_ready        # whole: resolves at the end of the body
        except BaseException:
            exchange.release()
            raise
        response = exchange.response
        response.t_sent_ns = t_sent
        if new:
            response.opened = conn.stamps
        conn.exchange = None
        if self.reuse and exchange.keep_alive and not conn.closed and not self.waiting:
            self.idle.append(conn)              # release()'s usual outcome, inline
        else:
            self.release(conn, reusable=exchange.keep_alive)
        parts = exchange.parts
        return (response, parts[0] if len(parts) == 1 else b"".join(parts),
                exchange.t_end, None)

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
