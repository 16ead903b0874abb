"""REST (unary embeddings) and SSE (token streams) clients over any HTTP version.

The HTTP version lives in a transport (clients.transport.http1, clients.transport.http2, clients.transport.http3)
that implements `HttpTransport`; the clients here own the OpenAI semantics, so the
three REST and three SSE cells differ only in the transport they are given.

REST uses `HttpTransport.fetch` (the whole response, its caller woken once); SSE uses
`request` and streams `body_chunks`. Streams report the client's local port of the
connection that carried them in `StreamResult.extra["local_port"]` (the network lab
matches it against its packet log).
"""

from __future__ import annotations

import abc
import asyncio
import collections
from typing import Any, AsyncIterator, ClassVar

import orjson

from clients.base import (Client, ProtocolViolation, StreamResult, Target, UnaryResult, auth_header,
                   clock_ns)
from clients.openai_codec import ChunkReader, decode_embeddings, error_from_body, parse_server_timing
from clients.transport.phases import ConnectStamps, curl_style
from clients.sse import SSEDecoder

Headers = list[tuple[bytes, bytes]]


class HttpResponse:
    """A response whose headers have arrived; the body is read from `exchange`.

    `headers` holds (lowercase name, value) pairs. A transport that has the header
    block as raw lines (libcurl hands them over so) passes `lines` instead: they are
    split into pairs only if someone asks for `headers`; `header()` scans them as they
    are (the unary path reads one header: Server-Timing).
    """

    __slots__ = ("status", "_headers", "t_first_byte_ns", "new_connection", "connect_ns",
                 "local_port", "_lines", "_block", "t_sent_ns", "opened")

    def __init__(self, status: int, headers: Headers | None, t_first_byte_ns: int,
                 new_connection: bool, connect_ns: int | None,
                 local_port: int | None = None, lines: list[bytes] | None = None) -> None:
        self.status = status
        self._headers = headers
        self.t_first_byte_ns = t_first_byte_ns
        self.new_connection = new_connection
        self.connect_ns = connect_ns
        self.local_port = local_port    # the client's port of the connection that carried it
        self._lines = lines             # "Name: value\r\n" lines, no status line
        self._block: dict[bytes, bytes] | None = None    # header()'s index of `headers`
        # Lifecycle stamps a transport that takes them fills in (clients.transport.phases): when
        # the request was written (0: unknown), how its new connection was opened.
        self.t_sent_ns = 0
        self.opened: ConnectStamps | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            headers = []
            for line in self._lines or ():
                name, sep, value = line.partition(b":")
                if sep:
                    headers.append((name.strip().lower(), value.strip()))
            self._headers = headers
        return self._headers

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header, by its lowercase name."""
        if self._headers is not None:
            index = self._block
            if index is None:           # name -> first value, built once, in C
                index = self._block = dict(reversed(self._headers))
            return index.get(name)      # type: ignore[union-attr]
        prefix = name + b":"
        n = len(prefix)
        for line in self._lines or ():
            if line[:n].lower() == prefix:
                return line[n:].strip()
        return None

    def __repr__(self) -> str:
        return (f"HttpResponse(status={self.status}, headers={self.headers!r}, "
                f"t_first_byte_ns={self.t_first_byte_ns}, new_connection={self.new_connection}, "
                f"connect_ns={self.connect_ns}, local_port={self.local_port})")


class HttpExchange(abc.ABC):
    """One request/response on some connection."""

    response: HttpResponse

    @abc.abstractmethod
    def body_chunks(self) -> AsyncIterator[tuple[bytes, int]]:
        """Body data as it arrives, each with its perf_counter_ns receive time.

        The last chunk may be empty: it marks when the end of the body arrived, which
        can be a later packet than the last data.
        """

    async def read_body(self) -> tuple[bytes, int]:
        """The whole body and the time its last byte arrived."""
        parts, t_last = [], self.response.t_first_byte_ns
        async for chunk, t in self.body_chunks():
            parts.append(chunk)
            t_last = t
        return b"".join(parts), t_last

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Finish with this exchange (abandon the stream if the body is unread)."""

    def local_port(self) -> int | None:
        """The client's local port of the connection that carried this exchange (the
        network lab matches it against its packet log); None if unknown. Read it while
        the exchange is open: a connection closed since has no port any more."""
        port = self.response.local_port
        if port is None:        # a transport that does not fill it in: ask its socket
            conn = getattr(self, "conn", None) or getattr(self, "_conn", None)
            port = socket_port(getattr(conn, "transport", None)
                               or getattr(conn, "_transport", None))
        return port


def socket_port(transport: Any) -> int | None:
    """The local port of an asyncio transport's socket, or None."""
    try:
        name = transport.get_extra_info("sockname")
    except (AttributeError, OSError):
        return None
    return name[1] if isinstance(name, tuple) and len(name) >= 2 else None


class QueuedExchange(HttpExchange):
    """An exchange whose transport pushes body chunks as they arrive.

    Subclasses set `loop`, `chunks` (a deque), `waiter` (None), `complete` (False) and
    `error` (None) in __init__, append to `chunks` and call `_wake()`.
    """

    loop: asyncio.AbstractEventLoop
    chunks: collections.deque[tuple[bytes, int]]
    waiter: asyncio.Future | None
    complete: bool
    error: Exception | None

    def finish(self, t: int) -> None:
        self.chunks.append((b"", t))    # when the end arrived, as every transport reports it
        self.complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def body_chunks(self) -> AsyncIterator[tuple[bytes, int]]:
        chunks = self.chunks
        while True:
            while chunks:
                yield chunks.popleft()
            if self.complete:
                return
            if self.error is not None:
                raise self.error
            self.waiter = self.loop.create_future()
            await self.waiter
            self.waiter = None


class HttpTransport(abc.ABC):
    """Connections of one HTTP version to one target, under one reuse policy.

    `request` sends a request and returns once the response headers arrived; it must
    verify the negotiated protocol (ALPN) and raise FallbackError on any other.
    """

    version: ClassVar[str]          # "1.1", "2", "3"

    def __init__(self, target: Target, *, reuse: bool, max_connections: int | None = None) -> None:
        self.target = target
        self.reuse = reuse
        # HTTP/1.1 only (one request per connection at a time): callers beyond this many
        # connections wait for a free one. Multiplexed versions use one connection.
        self.max_connections = max_connections

    @abc.abstractmethod
    async def request(self, method: bytes, path: bytes, headers: Headers,
                      body: bytes) -> HttpExchange: ...

    async def fetch(self, method: bytes, path: bytes, headers: Headers,
                    body: bytes) -> tuple[HttpResponse, bytes, int, dict[str, int] | None]:
        """A whole exchange: the response, its body, when the body's end arrived, and the
        engine's own phase times in microseconds (libcurl's; None elsewhere).

        The unary path. Transports override it to wake the caller once, when the body is
        complete, instead of once for the headers and again for the body.
        """
        exchange = await self.request(method, path, headers, body)
        try:
            raw, t_received = await exchange.read_body()
        finally:
            await exchange.aclose()
        return exchange.response, raw, t_received, getattr(exchange, "curl_phases", None)

    @abc.abstractmethod
    async def close(self) -> None: ...


_POST_JSON: Headers = [(b"content-type", b"application/json"), (b"accept", b"*/*")]


class _HttpClient(Client):
    transport_class: ClassVar[type[HttpTransport]]

    def __init__(self, target: Target, *, reuse: bool = True,
                 max_connections: int | None = None) -> None:
        super().__init__(target, reuse=reuse)
        self.transport = self.transport_class(target, reuse=reuse,
                                              max_connections=max_connections)
        self._headers = _POST_JSON + auth_header(target)
        self._base = target.base_path.encode()
        self._embeddings = self._base + b"/embeddings"

    async def _post(self, path: bytes, request: dict[str, Any]) -> tuple[HttpExchange, bytes, int]:
        body = orjson.dumps(request)
        t_start = clock_ns()
        exchange = await self.transport.request(b"POST", path, self._headers, body)
        return exchange, body, t_start

    async def close(self) -> None:
        await self.transport.close()


def _engine_phases(exchange: HttpExchange, extra: dict[str, Any]) -> None:
    # An engine that times its own phases (libcurl) hands them on, in microseconds.
    phases = getattr(exchange, "curl_phases", None)
    if phases is not None:
        extra["curl_phases"] = phases


class RestClient(_HttpClient):
    """POST /v1/embeddings; latency runs to the decoded vectors."""

    streaming = False

    async def embed(self, request: dict[str, Any]) -> UnaryResult:
        body = orjson.dumps(request)
        t_start = clock_ns()
        resp, raw, t_received, phases = await self.transport.fetch(
            b"POST", self._embeddings, self._headers, body)
        if resp.status != 200:
            raise error_from_body(resp.status, raw)
        vectors = decode_embeddings(raw)
        t_decoded = clock_ns()
        t_sent = resp.t_sent_ns         # a transport that stamps the lifecycle (ours)
        result = UnaryResult(vectors, t_start, resp.t_first_byte_ns, t_received, t_decoded,
                             len(body), len(raw),
                             parse_server_timing(resp.header(b"server-timing")),
                             resp.new_connection, resp.connect_ns,
                             {"phases": curl_style(t_start, resp.opened, t_sent,
                                                   resp.t_first_byte_ns, t_received)}
                             if t_sent else {})
        if phases is not None:          # libcurl's own phase times, in microseconds
            result.extra["curl_phases"] = phases
        if resp.opened is not None and resp.opened.resumed is not None:
            result.extra["resumed"] = resp.opened.resumed   # how its handshake went
        return result


class SseClient(_HttpClient):
    """POST /v1/chat/completions with stream: true; tokens time-stamped as they arrive."""

    streaming = True

    async def generate(self, request: dict[str, Any]) -> StreamResult:
        if not request.get("stream"):
            request = {**request, "stream": True}
        exchange, body, t_start = await self._post(self._base + b"/chat/completions", request)
        resp = exchange.response
        try:
            local_port = exchange.local_port()      # while the connection is surely open
            if resp.status != 200:
                raw, _ = await exchange.read_body()
                raise error_from_body(resp.status, raw)
            ctype = resp.header(b"content-type") or b""
            if not ctype.startswith(b"text/event-stream"):
                raise ProtocolViolation(f"expected text/event-stream, got {ctype.decode()!r}")
            reader, size, t_end = await self._read_events(exchange)
        finally:
            await exchange.aclose()
        if not reader.done:
            raise ProtocolViolation("stream ended without 'data: [DONE]'")
        result = StreamResult(reader.tokens, t_start, resp.t_first_byte_ns, t_end, len(body),
                              size, reader.server_time_us, reader.usage, resp.new_connection,
                              resp.connect_ns)
        result.extra["local_port"] = local_port
        if resp.opened is not None and resp.opened.resumed is not None:
            result.extra["resumed"] = resp.opened.resumed   # how its handshake went
        if resp.t_sent_ns:
            result.extra["phases"] = curl_style(t_start, resp.opened, resp.t_sent_ns,
                                                resp.t_first_byte_ns, t_end)
        _engine_phases(exchange, result.extra)
        return result

    @staticmethod
    async def _read_events(exchange: HttpExchange) -> tuple[ChunkReader, int, int]:
        decoder, reader = SSEDecoder(), ChunkReader()
        size, t_end = 0, exchange.response.t_first_byte_ns
        async for chunk, t_recv in exchange.body_chunks():
            size += len(chunk)
            t_end = t_recv
            for event in decoder.feed(chunk):
                if event.data == "[DONE]":
                    reader.done = True
                    continue
                try:
                    reader.add(orjson.loads(event.data), t_recv)
                except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
                    raise ProtocolViolation(f"bad SSE chunk {event.data[:80]!r}: {exc}") from None
        return reader, size, t_end
