"""HTTP/2 transport: the h2 state machine under a small asyncio Protocol.

TLS with ALPN "h2" (anything else negotiated is a FallbackError), or cleartext h2c with
prior knowledge when `Target.tls` is False. With reuse, all concurrent requests share
one connection as multiplexed streams; without, each request gets its own connection.

Receive windows are opened to 16 MiB (stream and connection), as curl and browsers do:
with h2's default 64 KiB a 150 KB embedding response would wait on WINDOW_UPDATE round
trips that no real client pays.

Client CPU: at concurrency 1 every microsecond of it is in series with the server, and
h2 is pure Python. What this module avoids, each measured per request: outbound header
validation of our own constant headers; h2's inbound validation, which walks every
header byte in Python (~2,500 bytecodes), replaced by `header_block_error` (the same
rules, a few C-level searches); re-encoding the same request headers with HPACK
(`_CachingEncoder`); h2 rebuilding our already-bytes header tuples; hpack's DEBUG
logging calls; hyperframe's hexlified repr of every DATA frame; acknowledging the empty
DATA frame that only ends a stream. `fetch()` (the unary path) wakes its caller once,
at END_STREAM.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import re
import ssl
from typing import Any, AsyncIterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack.hpack
import hyperframe.frame

from clients.transport.phases import ConnectStamps, HostResolver
from clients.base import ConnectionLost, FallbackError, ProtocolViolation, Target, clock_ns
from clients.transport.connect import open_connection
from clients.http_api import Headers, HttpExchange, HttpResponse, HttpTransport, socket_port
from clients.transport.wire import METER
from base.client_tls import resumption_outcome

RECEIVE_WINDOW = 16 * 1024 * 1024


def _raw_data_repr(data: bytes | None) -> str:
    """hyperframe's own text, without hexlifying the whole payload to keep 20 chars."""
    if not data:
        return "None"
    r = binascii.hexlify(data[:10]).decode("ascii")
    return "<hex:" + (r + "..." if len(data) > 10 else r) + ">"


# h2 evaluates repr(frame) for every frame it receives, logging on or off
# (H2Connection._receive_frame), and hyperframe's repr of a DATA frame hexlifies its
# whole payload: ~200 us of client CPU per 154 KB response. Same text, a few us.
hyperframe.frame._raw_data_repr = _raw_data_repr


class _NoLog:
    """hpack logs every integer and header it encodes or decodes at DEBUG (~30 calls
    through logging's level checks per request/response pair, formatting arguments
    built each time); nobody debugs hpack from a load generator."""

    @staticmethod
    def debug(*args: Any, **kwargs: Any) -> None:
        return None


hpack.hpack.log = _NoLog()      # type: ignore[assignment]


class _BytesHeaders(list):
    """A request's header list, every name and value already bytes (this module's)."""

    __slots__ = ()


_h2_utf8_encode_headers = h2.stream.utf8_encode_headers


def _utf8_encode_headers(headers: Any) -> Any:
    # h2 rebuilds every header tuple of every request it sends, converting str to bytes
    # (~340 bytecodes a request); ours are bytes already. Any other list: h2's own.
    if headers.__class__ is _BytesHeaders:
        return headers
    return _h2_utf8_encode_headers(headers)


h2.stream.utf8_encode_headers = _utf8_encode_headers


class _CachingEncoder:
    """hpack's Encoder, remembering its last header block.

    A client sends the same request headers request after request; once the dynamic
    table holds them they encode to the same indexed bytes without touching the table.
    Re-encoding costs ~1,000 bytecodes per request; this costs a list comparison. The
    cached block is reused only for equal headers and an untouched table (the same
    entries, size, limit and no pending size update), and only if producing it did not
    change the table: then encoding again would give the same bytes and change nothing.
    """

    def __init__(self, encoder: hpack.Encoder) -> None:
        self._encoder = encoder
        self._last: tuple[Any, tuple, bytes] | None = None

    @property
    def header_table_size(self) -> int:
        return self._encoder.header_table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._encoder.header_table_size = value
        self._last = None

    def _state(self) -> tuple:
        # The newest entry itself (held, so compared by identity): any insertion
        # replaces it; with the count, size limit and pending-resize flag, equal states
        # mean an untouched table.
        table = self._encoder.header_table
        entries = table.dynamic_entries
        return (entries[0] if entries else None, len(entries), table.maxsize, table.resized)

    @staticmethod
    def _same(a: tuple, b: tuple) -> bool:
        return a[0] is b[0] and a[1:] == b[1:]

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        last = self._last
        state = self._state()
        if last is not None and self._same(last[1], state) and last[0] == headers:
            return last[2]
        encoded = self._encoder.encode(headers, huffman)
        after = self._state()
        self._last = (list(headers), after, encoded) if self._same(after, state) else None
        return encoded

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)


# Response header checks (RFC 9113 section 8.2 and 8.3), done here in a few C-level
# searches instead of by h2, whose inbound validation walks every header byte in Python
# (~2,500 bytecodes per response). Names are joined with LF (itself illegal in a name).
_BAD_NAMES = re.compile(rb"[\x00-\x09\x0b-\x20A-Z\x7f-\xff]|[^\n]:|(?:^|\n)(?:\n|$)")
_BAD_VALUES = re.compile(rb"[\x00\r]|(?:^|\n)[ \t]|[ \t](?:\n|$)")
_CONNECTION_HEADERS = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade"})


def header_block_error(headers: Headers, trailers: bool = False) -> str | None:
    """What is wrong with a received response header block (or trailers), or None.

    The checks h2's validate_headers makes for a client: names non-empty, lowercase,
    no illegal characters, no colon but a pseudo-header's leading one; values free of
    NUL, CR and LF and of surrounding whitespace; no connection-specific fields, TE
    only "trailers"; exactly one ':status' (three digits), first, and no other
    pseudo-header (none at all in trailers).
    """
    if not headers:
        return None if trailers else "response without ':status'"
    names, values = zip(*headers)
    joined = b"\n".join(names)
    if _BAD_NAMES.search(joined) or joined.count(b"\n") != len(names) - 1:
        return f"illegal header name {_culprit(names, _BAD_NAMES)!r}"
    block = b"\n".join(values)
    if _BAD_VALUES.search(block) or block.count(b"\n") != len(names) - 1:
        return f"illegal header value {_culprit(values, _BAD_VALUES)!r}"
    if not _CONNECTION_HEADERS.isdisjoint(names):
        return f"connection-specific header field {sorted(_CONNECTION_HEADERS & set(names))}"
    if b"te" in names and dict(headers)[b"te"].lower() != b"trailers":
        return "TE header other than 'trailers'"
    if trailers:
        if joined.startswith(b":") or b"\n:" in joined:
            return "pseudo-header field in trailers"
        return None
    status = headers[0][1]
    if names[0] != b":status" or len(status) != 3 or not status.isdigit():
        return "response without a valid ':status' first"
    if b"\n:" in joined:
        return "pseudo-header field other than one ':status'"
    return None


def _culprit(fields: tuple[bytes, ...], pattern: re.Pattern) -> bytes:
    """The first field the pattern finds fault with, alone (the error path only)."""
    for field in fields:
        if pattern.search(field) or b"\n" in field:
            return field[:80]
    return b"?"


class _H2Stream(HttpExchange):
    def __init__(self, conn: "_H2Protocol", stream_id: int, new: bool,
                 connect_ns: int | None) -> None:
        self.conn, self.stream_id = conn, stream_id
        self.new, self.connect_ns = new, connect_ns
        self.headers_ready: asyncio.Future = conn.loop.create_future()
        self.chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self.waiter: asyncio.Future | None = None
        self.ended = False
        self.error: Exception | None = None
        self.whole = False             # read_body: wake the reader once, at the end

    def set_headers(self, headers: Headers, t: int) -> None:
        # header_block_error made sure ':status' (three digits) comes first, alone.
        self.response = HttpResponse(int(headers[0][1]), headers[1:], t, self.new,
                                     self.connect_ns, self.conn.local_port)
        if not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def push(self, data: bytes, t: int) -> None:
        self.chunks.append((data, t))
        if not self.whole:
            self._wake()

    def end(self, t: int) -> None:
        # END_STREAM may come in a later packet than the last DATA: the body is complete
        # only then, so the end gets its own (empty) chunk and receive time.
        self.chunks.append((b"", t))
        self.ended = True
        self._wake()

    def fail(self, exc: Exception) -> None:
        self.error = exc
        if not self.headers_ready.done():
            self.headers_ready.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def body_chunks(self) -> AsyncIterator[tuple[bytes, int]]:
        while True:
            while self.chunks:
                yield self.chunks.popleft()
            if self.ended:
                return
            if self.error is not None:
                raise self.error
            self.waiter = self.conn.loop.create_future()
            await self.waiter
            self.waiter = None

    async def read_body(self) -> tuple[bytes, int]:
        # One wakeup when END_STREAM arrives instead of one per DATA read, and no
        # async generator: the whole body is what unary clients want.
        self.whole = True
        while not self.ended:
            if self.error is not None:
                raise self.error
            self.waiter = self.conn.loop.create_future()
            await self.waiter
            self.waiter = None
        chunks, self.chunks = self.chunks, collections.deque()
        return b"".join([c for c, _ in chunks]), chunks[-1][1]

    async def aclose(self) -> None:
        self.conn.finish_stream(self)


class _H2Protocol(asyncio.Protocol):
    def __init__(self, transport_owner: "Http2Transport") -> None:
        self.owner = transport_owner
        self.loop = asyncio.get_running_loop()
        # Outbound validation re-checks our own constant headers on every request
        # (~25 us each). The server's headers are validated, by header_block_error
        # (h2's inbound validation walks every header byte in Python).
        config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False,
                                           validate_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.encoder = _CachingEncoder(self.h2.encoder)     # type: ignore[assignment]
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _H2Stream] = {}
        self.closed = False
        self.local_port: int | None = None
        self.got_settings = False      # the server's SETTINGS: proof it speaks HTTP/2
        self.stamps: ConnectStamps | None = None    # how opening it went (phases)
        self.window_waiters: list[asyncio.Future] = []
        self.stream_slot_waiters: list[asyncio.Future] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sock = transport.get_extra_info("socket")
        self.local_port = socket_port(transport)
        METER.track(self.sock)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW,
            h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(RECEIVE_WINDOW - 65535)
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        t = clock_ns()                       # one receive time for this whole read
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            if data.startswith(b"HTTP/1."):     # h2c prior knowledge refused by an h1 server
                self._fail_all(FallbackError("asked for h2c, server answered HTTP/1.x"))
            else:
                self._fail_all(ProtocolViolation(f"HTTP/2 protocol error: {exc}"))
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                error = header_block_error(ev.headers,
                                           isinstance(ev, h2.events.TrailersReceived))
                if error is not None:
                    self._fail_all(ProtocolViolation(f"HTTP/2 protocol error: {error} "
                                                     f"(stream {ev.stream_id})"))
                    self.transport.close()
                    return
            self._dispatch(ev, t)
        self.flush()

    def _dispatch(self, ev: h2.events.Event, t: int) -> None:
        if isinstance(ev, h2.events.DataReceived):
            if ev.flow_controlled_length:   # not the empty DATA that only ends a stream
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                stream = self.streams.get(ev.stream_id)
                if stream is not None:
                    stream.push(ev.data, t)
        elif isinstance(ev, h2.events.ResponseReceived):
            stream = self.streams.get(ev.stream_id)
            if stream is not None:
                stream.set_headers(ev.headers, t)
        elif isinstance(ev, h2.events.StreamEnded):
            stream = self.streams.get(ev.stream_id)
            if stream is not None:
                stream.end(t)
            self._wake(self.stream_slot_waiters)
        elif isinstance(ev, h2.events.StreamReset):
            stream = self.streams.get(ev.stream_id)
            if stream is not None:
                code = h2.errors.ErrorCodes(ev.error_code).name if ev.error_code in \
                    h2.errors.ErrorCodes._value2member_map_ else ev.error_code
                stream.fail(ConnectionLost(f"server reset stream {ev.stream_id} ({code})"))
            self._wake(self.stream_slot_waiters)
        elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self.got_settings = True
            self._wake(self.window_waiters)
            self._wake(self.stream_slot_waiters)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self._fail_all(ConnectionLost(f"server sent GOAWAY ({ev.error_code!r})"))

    @staticmethod
    def _wake(waiters: list[asyncio.Future]) -> None:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        METER.closing(self.sock)            # a peer's close: counts kept if still readable
        if self.got_settings:
            self._fail_all(ConnectionLost(f"connection closed ({exc or 'EOF'})"))
        else:
            self._fail_all(FallbackError("server closed the connection without sending "
                                         "HTTP/2 SETTINGS: it does not speak HTTP/2 here"))
        self._wake(self.window_waiters)
        self._wake(self.stream_slot_waiters)

    def _fail_all(self, exc: Exception) -> None:
        for stream in self.streams.values():
            if not stream.ended:
                stream.fail(exc)

    async def _wait(self, waiters: list[asyncio.Future]) -> None:
        fut = self.loop.create_future()
        waiters.append(fut)
        await fut
        if self.closed:
            raise ConnectionLost("connection closed while waiting to send")

    async def open_stream(self, headers: Headers, body: bytes, new: bool,
                          connect_ns: int | None) -> _H2Stream:
        while self.h2.open_outbound_streams >= self.h2.remote_settings.max_concurrent_streams:
            await self._wait(self.stream_slot_waiters)      # respect the server's limit
        stream_id = self.h2.get_next_available_stream_id()
        stream = _H2Stream(self, stream_id, new, connect_ns)
        self.streams[stream_id] = stream
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        if body:       # HEADERS leave with the first DATA: one write, one server wakeup
            await self._send_body(stream_id, body)
        else:
            self.flush()
        return stream

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            window = min(self.h2.local_flow_control_window(stream_id),
                         self.h2.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                await self._wait(self.window_waiters)
                continue
            piece, view = view[:window], view[window:]
            self.h2.send_data(stream_id, piece.tobytes(), end_stream=not view)
            self.flush()

    def finish_stream(self, stream: _H2Stream) -> None:
        self.streams.pop(stream.stream_id, None)
        if not stream.ended and not self.closed:
            try:      # the caller left early: tell the server to stop sending
                self.h2.reset_stream(stream.stream_id, h2.errors.ErrorCodes.CANCEL)
                self.flush()
            except h2.exceptions.StreamClosedError:
                pass
        self.owner.stream_done(self)

    def close(self) -> None:
        if not self.closed:
            self.h2.close_connection()
            self.flush()
            METER.closing(self.sock)
            self.transport.close()


class Http2Transport(HttpTransport):
    version = "2"

    def __init__(self, target: Target, *, reuse: bool, max_connections: int | None = None) -> None:
        super().__init__(target, reuse=reuse, max_connections=max_connections)
        self._hosts = HostResolver(target)
        self.tls = target.tls is not False
        self._ssl: ssl.SSLContext | None = None
        if self.tls:
            from base.client_tls import client_context
            self._ssl = client_context(target.ca, ["h2"], target.tls_version,
                                       resume=target.resumption is not None)
        self.shared: _H2Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self.conns: set[_H2Protocol] = set()
        self._scheme = b"https" if self.tls else b"http"
        self._authority = target.authority.encode()

    async def _connect(self) -> tuple[_H2Protocol, int]:
        t0 = clock_ns()
        stamps = ConnectStamps(t0)
        address = await self._hosts.address(stamps)   # the lab's DNS step
        target = self.target
        # TCP, then TLS over it: each step stamped, each failure its own error class.
        # connection_made (which sends the preface) runs after the handshake.
        conn = await open_connection(lambda: _H2Protocol(self), address, target.port,
                                     ctx=self._ssl, server_name=target.server_name,
                                     stamps=stamps, timeout_s=target.connect_timeout_s,
                                     label="HTTP/2", host=target.host)
        conn.stamps = stamps
        stamps.resumed = resumption_outcome(self._ssl, conn.transport)   # if asked for
        if self._ssl is not None:
            alpn = conn.transport.get_extra_info("ssl_object").selected_alpn_protocol()
            if alpn != "h2":
                conn.transport.close()
                raise FallbackError(f"asked for h2 via ALPN, server selected {alpn!r}")
        self.conns.add(conn)
        return conn, clock_ns() - t0

    async def _connection(self) -> tuple[_H2Protocol, bool, int | None]:
        if not self.reuse:
            conn, took = await self._connect()
            return conn, True, took
        if self.shared is not None and not self.shared.closed:
            return self.shared, False, None
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:       # concurrent first callers share one connect
            if self.shared is not None and not self.shared.closed:
                return self.shared, False, None
            self.shared, took = await self._connect()
            return self.shared, True, took

    async def request(self, method: bytes, path: bytes, headers: Headers,
                      body: bytes) -> HttpExchange:
        conn, new, took = await self._connection()
        all_headers = _BytesHeaders([(b":method", method), (b":scheme", self._scheme),
                                     (b":authority", self._authority), (b":path", path),
                                     *headers, (b"content-length", b"%d" % len(body))])
        stream = await conn.open_stream(all_headers, body, new, took)
        t_sent = clock_ns()
        try:
            await stream.headers_ready
        except BaseException:
            await stream.aclose()
            raise
        response = stream.response
        response.t_sent_ns = t_sent
        if new:
            response.opened = conn.stamps
        return stream

    async def fetch(self, method: bytes, path: bytes, headers: Headers,
                    body: bytes) -> tuple[HttpResponse, bytes, int, None]:
        conn = self.shared
        if self.reuse and conn is not None and not conn.closed:
            new, took = False, None
        else:
            conn, new, took = await self._connection()
        all_headers = _BytesHeaders([(b":method", method), (b":scheme", self._scheme),
                                     (b":authority", self._authority), (b":path", path),
                                     *headers, (b"content-length", b"%d" % len(body))])
        stream = await conn.open_stream(all_headers, body, new, took)
        t_sent = clock_ns()                         # curl's pretransfer: request written
        try:
            raw, t_end = await stream.read_body()     # one wakeup, at END_STREAM
        finally:
            ready = stream.headers_ready            # nobody awaits it here
            if ready.done() and not ready.cancelled():
                ready.exception()                   # so a failure is not "never retrieved"
            conn.finish_stream(stream)
        response = stream.response
        response.t_sent_ns = t_sent
        if new:
            response.opened = conn.stamps
        return response, raw, t_end, None

    def stream_done(self, conn: _H2Protocol) -> None:
        if not self.reuse:
            conn.close()
            self.conns.discard(conn)

    async def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns.clear()
        self.shared = None
        await asyncio.sleep(0)
