"""HTTP/3 transport: aioquic's QUIC and HTTP/3 state machines under a lean asyncio driver.

aioquic is sans-I/O at its core (QuicConnection, H3Connection); its asyncio layer
(`connect()`, QuicConnectionProtocol) adds a StreamReader per stream and owns the timer.
The driver here replaces that layer with the few lines a client needs, so that:

- every event decoded from one datagram carries one receive time, `clock_ns()` taken
  once aioquic has decrypted the datagram, as its events are processed: tokens that
  arrived in one packet share a receive time;
- a FIN that arrives in a datagram of its own (hypercorn sends HEADERS, DATA and FIN
  separately, 200-450 us apart on loopback) is yielded as `(b"", recv_ns)`, so a
  reader's last timestamp is when the response was complete, not its last data;
- the UDP socket is connected, so an ICMP port-unreachable fails a dead port at once
  instead of after the handshake timeout (which still bounds a silent peer);
- closing leaves nothing scheduled: the QUIC timer dies with the socket;
- aioquic's clock is time.monotonic(), not loop.time(): uvloop's moves in whole
  milliseconds, and aioquic's RTT samples, ACK delays and pacer need finer
  (servers/__main__.py, STDLIB_LOOP_KINDS, has what a millisecond clock did to the
  server). A timer uvloop fires early (it truncates delays to milliseconds) runs at the
  time it was set for.

Connection policy: reuse=True multiplexes all requests as streams of one connection,
opened lazily by the first request (which reports new_connection and the handshake time
as connect_ns) and reopened if it closes; reuse=False opens one per request and closes it
when the exchange is closed (it then drains for 3 PTO in the background; `close()` waits
for that).

Resumption (Target.resumption): every connection keeps the newest session ticket the
server sent, and the next new connection offers it. "session": a resumed 1-RTT
handshake, the request sent once it is done; "0rtt": the request is sent at once, in
0-RTT packets, and the handshake runs beside it (the ALPN is still checked before the
response is taken). Whether the server resumed and accepted the early data is
aioquic's HandshakeCompleted (session_resumed, early_data_accepted), reported per
connection in `ConnectStamps.resumed`.

Cancelling: an exchange closed before its response ended cancels the request as RFC 9114
section 4.1.1 asks, STOP_SENDING + RESET_STREAM with H3_REQUEST_CANCELLED. hypercorn
0.18 ignores both events, but aioquic on its side then refuses the app's next write,
which ends the app; hypercorn ignores CONNECTION_CLOSE for running streams, so closing a
connection first resets its open streams in a datagram of their own.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from time import monotonic
from typing import AsyncIterator

from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import SessionTicket
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

from clients.base import (
    ClientError,
    ConnectError,
    ConnectionLost,
    FallbackError,
    Target,
    clock_ns,
)
from clients.base import PhaseTimeout, Refused
from clients.transport.connect import tls_class
from clients.http_api import Headers, HttpExchange, HttpResponse, HttpTransport
from clients.transport.phases import ConnectStamps, HostResolver
from clients.transport.wire import METER

DEFAULT_HANDSHAKE_TIMEOUT_S = 5.0


class _Stream:
    """Receive state of one request stream: filled by the connection, drained by a reader."""

    __slots__ = ("loop", "status", "headers", "t_headers", "chunks", "ended", "error",
                 "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.status = 0
        self.headers: Headers | None = None
        self.t_headers = 0
        self.chunks: deque[tuple[bytes, int]] = deque()
        self.ended = False
        self.error: ClientError | None = None
        self.waiter: asyncio.Future | None = None

    def on_headers(self, headers: Headers, recv_ns: int) -> None:
        # aioquic validated them: names lowercase, ':status' (3 digits) the only
        # pseudo-header and first. A second HEADERS frame is trailers: not used.
        if self.headers is None:
            status = int(headers[0][1])
            if status >= 200:           # 1xx are interim; the final response follows
                self.status, self.headers, self.t_headers = status, headers[1:], recv_ns
                self.wake()

    def on_data(self, data: bytes, recv_ns: int) -> None:
        self.chunks.append((data, recv_ns))
        self.wake()

    def end(self, error: ClientError | None = None) -> None:
        self.ended, self.error = True, error
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def wait_headers(self) -> None:
        while self.headers is None:
            if self.ended:
                raise self.error or ConnectionLost("HTTP/3 stream ended before the "
                                                   "response headers")
            await self.wait()


class _Connection(asyncio.DatagramProtocol):
    """One QUIC connection carrying HTTP/3 requests, on its own connected UDP socket.

    `handshake` resolves when TLS completes (or fails with ConnectError); `closed`
    resolves once the socket is closed and no timer is left.
    """

    def __init__(self, config: QuicConfiguration, loop: asyncio.AbstractEventLoop,
                 where: str, on_ticket=None) -> None:
        self._quic = QuicConnection(configuration=config, session_ticket_handler=on_ticket)
        self._h3 = H3Connection(self._quic)
        self._loop = loop
        self._where = where
        self.stamps: ConnectStamps | None = None    # how opening it went
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._streams: dict[int, _Stream] = {}
        self._recv_ns = 0
        self.alpn: str | None = None
        self.session_resumed = False    # from HandshakeCompleted
        self.early_data_accepted = False
        self.open = True                # accepts new requests
        self.handshake: asyncio.Future = loop.create_future()
        self.closed: asyncio.Future = loop.create_future()

    # ------------------------------------------------------------ requests

    def send_request(self, headers: Headers, body: bytes) -> tuple[int, _Stream]:
        stream_id = self._quic.get_next_available_stream_id()
        if body:
            self._h3.send_headers(stream_id, headers)
            self._h3.send_data(stream_id, body, end_stream=True)
        else:
            self._h3.send_headers(stream_id, headers, end_stream=True)
        stream = self._streams[stream_id] = _Stream(self._loop)
        self._transmit()
        return stream_id, stream

    def cancel(self, stream_id: int) -> None:
        """Abandon a stream whose response has not ended (no-op once it has)."""
        if self._streams.pop(stream_id, None) is not None:
            self._reset(stream_id)
            self._transmit()

    def _reset(self, stream_id: int) -> None:
        self._quic.stop_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
        self._quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)

    def close(self) -> None:
        """Cancel open streams, then CONNECTION_CLOSE; `closed` resolves after draining."""
        if not self.open:
            return
        self.open = False
        streams, self._streams = self._streams, {}
        for stream_id, stream in streams.items():
            self._reset(stream_id)
            stream.end(ConnectionLost(f"HTTP/3 connection to {self._where} closed by "
                                      "the client"))
        # Resets go out before CONNECTION_CLOSE: aioquic sends nothing else with it.
        self._transmit()
        self._quic.close(error_code=ErrorCode.H3_NO_ERROR)
        self._transmit()

    def abort(self) -> None:
        """Drop the connection without telling the peer (failed or cancelled handshake)."""
        self.open = False
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport             # type: ignore[assignment]
        self._quic.connect(transport.get_extra_info("peername"), now=monotonic())
        self._transmit()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        METER.datagram(len(data), sent=False)
        self._quic.receive_datagram(data, addr, now=monotonic())
        self._recv_ns = clock_ns()
        self._process_events()
        self._transmit()

    def error_received(self, exc: OSError) -> None:
        # Only "port unreachable" is conclusive; other send errors (ENOBUFS...) are
        # transient and QUIC's loss recovery deals with them.
        if not isinstance(exc, ConnectionRefusedError):
            return
        if not self.handshake.done():
            self.handshake.set_exception(Refused(
                f"QUIC handshake to {self._where} failed: port unreachable (nothing "
                "listens on that UDP port)"))
        self._fail(ConnectionLost(f"HTTP/3 connection to {self._where} lost: port "
                                  "unreachable (server gone)"))
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fail(ConnectionLost(f"HTTP/3 connection to {self._where} lost: socket closed"))
        if not self.handshake.done():
            self.handshake.set_exception(ConnectError(
                f"QUIC handshake to {self._where} abandoned: socket closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    # ------------------------------------------------------------ events

    def _process_events(self) -> None:
        quic, h3 = self._quic, self._h3
        event = quic.next_event()
        while event is not None:
            for h3_event in h3.handle_event(event):
                self._on_h3_event(h3_event)
            if type(event) is not StreamDataReceived:
                self._on_quic_event(event)
            event = quic.next_event()

    def _on_h3_event(self, event: H3Event) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:              # cancelled stream, or push: nobody is reading
            return
        kind = type(event)
        if kind is DataReceived:
            if event.data or event.stream_ended:    # an empty FIN still marks the end
                stream.on_data(event.data, self._recv_ns)
        elif kind is HeadersReceived:
            stream.on_headers(event.headers, self._recv_ns)
        else:
            return
        if event.stream_ended:
            del self._streams[event.stream_id]
            stream.end()

    def _on_quic_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream.end(ConnectionLost(f"server reset HTTP/3 stream {event.stream_id} "
                                          f"(error {event.error_code:#x})"))
        elif isinstance(event, HandshakeCompleted):
            self.alpn = event.alpn_protocol
            self.session_resumed = event.session_resumed
            self.early_data_accepted = event.early_data_accepted
            if not self.handshake.done():
                self.handshake.set_result(None)
        elif isinstance(event, ConnectionTerminated):
            reason = event.reason_phrase or f"error {event.error_code:#x}"
            if not self.handshake.done():
                # 0x100-0x1ff: a TLS alert (RFC 9001 4.8), raised by our own certificate
                # checks too: classified as the TCP clients' TLS failures are.
                cls = tls_class(reason) if 0x100 <= event.error_code < 0x200 else ConnectError
                self.handshake.set_exception(cls(
                    f"QUIC handshake to {self._where} failed: {reason}"))
            self._fail(ConnectionLost(f"HTTP/3 connection to {self._where} closed: {reason}"))
            self._transport.close()

    def _fail(self, error: ClientError) -> None:
        self.open = False
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.end(error)

    # ------------------------------------------------------------ sending and timer

    def _transmit(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        quic = self._quic
        for data, _ in quic.datagrams_to_send(now=monotonic()):
            transport.sendto(data)      # connected socket: no address
            METER.datagram(len(data), sent=True)
        timer_at = quic.get_timer()
        if timer_at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if timer_at is None else self._loop.call_later(
                timer_at - monotonic(), self._on_timer)
            self._timer_at = timer_at

    def _on_timer(self) -> None:
        now = max(self._timer_at, monotonic())
        self._timer = self._timer_at = None
        self._quic.handle_timer(now=now)
        self._process_events()
        self._transmit()


class _Exchange(HttpExchange):
    def __init__(self, conn: _Connection, stream_id: int, stream: _Stream,
                 response: HttpResponse, owns_conn: bool) -> None:
        self.response = response
        self._conn = conn
        self._stream_id = stream_id
        self._stream = stream
        self._owns_conn = owns_conn

    async def body_chunks(self) -> AsyncIterator[tuple[bytes, int]]:
        """Data as it arrives; the last chunk may be b"" (the FIN's receive time)."""
        stream = self._stream
        chunks = stream.chunks
        while True:
            while chunks:
                yield chunks.popleft()
            if stream.ended:
                break
            await stream.wait()
        if stream.error is not None:
            raise stream.error

    async def aclose(self) -> None:
        self._conn.cancel(self._stream_id)
        if self._owns_conn:
            self._conn.close()


class Http3Transport(HttpTransport):
    """HTTP/3 over aioquic; `handshake_timeout_s` bounds connecting to a silent peer."""

    version = "3"

    def __init__(self, target: Target, *, reuse: bool, max_connections: int | None = None,
                 handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S) -> None:
        super().__init__(target, reuse=reuse, max_connections=max_connections)
        self.handshake_timeout_s = min(handshake_timeout_s, target.connect_timeout_s)
        self._config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                                         server_name=target.server_name)
        if target.ca is not None:
            self._config.load_verify_locations(str(target.ca))
        self._where = f"{target.host}:{target.port}"
        self._pseudo = [(b":scheme", b"https"), (b":authority", target.authority.encode())]
        self._shared: _Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._live: set[_Connection] = set()    # every connection whose socket is open
        self._hosts = HostResolver(target)
        self._resumption = target.resumption        # None, "session" or "0rtt"
        self._ticket: SessionTicket | None = None   # the newest the server sent

    def _on_ticket(self, ticket: SessionTicket) -> None:
        self._ticket = ticket

    async def request(self, method: bytes, path: bytes, headers: Headers,
                      body: bytes) -> HttpExchange:
        conn, connect_ns, early = self._shared, None, False
        if not self.reuse:
            conn, connect_ns, early = await self._connect()
        elif conn is None or not conn.open:
            conn, connect_ns = await self._open_shared()
        block = [(b":method", method), *self._pseudo, (b":path", path), *headers,
                 (b"content-length", b"%d" % len(body))]
        stream_id = -1
        try:
            stream_id, stream = conn.send_request(block, body)
            t_sent = clock_ns()
            if early:               # sent as 0-RTT data: the handshake completes meanwhile
                await self._handshake(conn)
            await stream.wait_headers()
        except BaseException:
            self._abandon(conn, stream_id)
            raise
        response = HttpResponse(stream.status, stream.headers, stream.t_headers,
                                connect_ns is not None, connect_ns)
        response.t_sent_ns = t_sent
        if connect_ns is not None:
            stamps = response.opened = conn.stamps
            if early and not conn.early_data_accepted:
                # Refused early data is resent in 1-RTT packets once the handshake is
                # done: the request really went then.
                response.t_sent_ns = max(t_sent, stamps.handshake or t_sent)
        return _Exchange(conn, stream_id, stream, response, not self.reuse)

    def _abandon(self, conn: _Connection, stream_id: int) -> None:
        if stream_id >= 0:
            conn.cancel(stream_id)
        if not self.reuse:
            conn.close()

    async def _open_shared(self) -> tuple[_Connection, int | None]:
        async with self._connect_lock:  # concurrent first requests share one handshake
            conn = self._shared
            if conn is not None and conn.open:
                return conn, None
            conn, connect_ns, _ = await self._connect(early_ok=False)
            self._shared = conn
            return conn, connect_ns

    async def _connect(self, early_ok: bool = True) -> tuple[_Connection, int, bool]:
        """A new connection, its setup time, and whether the request may go at once as
        0-RTT data (then the handshake is still running: `_handshake` finishes it);
        otherwise its handshake is done and ALPN h3 checked."""
        t0 = clock_ns()
        stamps = ConnectStamps(t0)
        loop = asyncio.get_running_loop()
        address = await self._hosts.address(stamps)
        config, ticket = self._config, None
        if self._resumption is not None:
            ticket = self._ticket
            if ticket is not None and ticket.is_valid:
                config = copy.copy(self._config)    # the shared one stays ticketless
                config.session_ticket = ticket
            else:
                ticket = None
        try:
            _, conn = await loop.create_datagram_endpoint(
                lambda: _Connection(config, loop, self._where,
                                    self._on_ticket if self._resumption else None),
                remote_addr=(address, self.target.port))
        except OSError as exc:
            raise ConnectError(f"cannot open a UDP socket to {self._where}: {exc}") from None
        self._live.add(conn)
        conn.closed.add_done_callback(lambda _: self._live.discard(conn))
        conn.stamps = stamps
        # aioquic offers early data with any ticket whose server allowed it.
        early = (early_ok and self._resumption == "0rtt" and ticket is not None
                 and ticket.max_early_data_size is not None)
        if early:
            return conn, clock_ns() - t0, True
        await self._handshake(conn)
        return conn, stamps.handshake - t0, False

    async def _handshake(self, conn: _Connection) -> None:
        """Wait (bounded) for the handshake of a connection being opened, check ALPN h3,
        and stamp it (0-RTT accepted: no handshake stamp, the request did not wait)."""
        stamps = conn.stamps
        try:
            await asyncio.wait_for(conn.handshake, self.handshake_timeout_s)
        except asyncio.TimeoutError:
            conn.abort()
            raise PhaseTimeout(f"QUIC handshake to {self._where} timed out after "
                               f"{self.handshake_timeout_s:g} s") from None
        except BaseException:
            conn.abort()
            raise
        if conn.alpn != "h3":
            conn.close()
            raise FallbackError(f"{self._where} negotiated ALPN {conn.alpn!r}, not 'h3'")
        if self._resumption is not None:
            stamps.resumed = ("0rtt" if conn.early_data_accepted and self._resumption == "0rtt"
                              else "session" if conn.session_resumed else "full")
        if stamps.resumed != "0rtt":
            stamps.handshake = clock_ns()   # QUIC: no TCP; TLS 1.3 inside the handshake

    async def close(self) -> None:
        """Close every connection and wait until each socket is closed."""
        self._shared = None
        live = list(self._live)
        for conn in live:
            conn.close()
        if live:
            await asyncio.wait([conn.closed for conn in live])
