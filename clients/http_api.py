"""REST (unary embeddings) and SSE (token streams) clients over any HTTP version.

The HTTP version lives in a transport (clients.http1, clients.http2, clients.http3)
that implements `HttpTransport`; the clients here own the OpenAI semantics, so the
three REST and three SSE cells differ only in the transport they are given.
"""

from __future__ import annotations

import abc
import asyncio
import collections
from dataclasses import dataclass
from typing import Any, AsyncIterator, ClassVar

import orjson

from .base import (Client, ProtocolViolation, StreamResult, Target, UnaryResult, auth_header,
                   clock_ns)
from .openai_codec import ChunkReader, embedding_vectors, error_from_body, parse_server_timing
from .sse import SSEDecoder

Headers = list[tuple[bytes, bytes]]


@dataclass
class HttpResponse:
    """A response whose headers have arrived; the body is read from `exchange`."""

    status: int
    headers: Headers
    t_first_byte_ns: int
    new_connection: bool
    connect_ns: int | None

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


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
        exchange, body, t_start = await self._post(self._base + b"/embeddings", request)
        try:
            raw, t_received = await exchange.read_body()
        finally:
            await exchange.aclose()
        resp = exchange.response
        if resp.status != 200:
            raise error_from_body(resp.status, raw)
        try:
            vectors = embedding_vectors(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise ProtocolViolation(f"embeddings response is not JSON: {exc}") from None
        t_decoded = clock_ns()
        timing = resp.header(b"server-timing")
        result = UnaryResult(vectors, t_start, resp.t_first_byte_ns, t_received, t_decoded,
                             len(body), len(raw),
                             parse_server_timing(timing.decode() if timing else None),
                             resp.new_connection, resp.connect_ns)
        _engine_phases(exchange, result.extra)
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
