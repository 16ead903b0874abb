"""HTTP/2 over one blocking socket: the python engine's closed-loop path for one user.

The asyncio HTTP/2 client (clients.transport.http2, over the h2 library) costs ~9,000 bytecodes
per request in h2's frame, HPACK and state-machine code, plus the event loop; at
concurrency 1 all of it is in series with the server (benchmarks/README.md: 0.63x of
h2load). When a worker has exactly one user on one connection (harness.run.load.loadgen's
"blocking" client path), nothing is multiplexed, and HTTP/2 shrinks to a few frames:
this transport writes them itself and reads the server's, one stream at a time,
over a blocking TCP or TLS socket (ALPN h2, or h2c with prior knowledge).

What each frame means is decided by the sans-IO framing core (clients.framing.h2:
the opening, request frames, the connection's control frames, the response's stream);
this module reads, writes, waits and stamps.

Same contract and stamps as clients.blocking.http1: `fetch_sync`, or `send_sync` then
`receive_sync` (the overlapped loop, harness.run.load.blocking_loop) and `response_waiting`;
t_first_byte is the clock after the read that completed the response's HEADERS, and
t_received the one after the read that completed its END_STREAM frame (as the asyncio
client stamps what h2 parsed from one data_received); lifecycle stamps for TCP, TLS
and when the request was written. A dead kept connection before any response frame is
retried once on a new one. The whole request must finish within `timeout_s`.

No DNS step (the lab's resolver) and no session resumption: clients.blocking.rest uses the
asyncio transport for those.
"""

from __future__ import annotations

import socket
import ssl
from typing import Callable

import hpack

from clients.base import (ClientError, ConnectionLost, FallbackError, RequestTimeout, Target,
                          clock_ns)
from clients.framing.h2 import (DATA, END_HEADERS, END_STREAM, HEADERS, OPENING,
                                RESPONSE_FRAMES, WINDOW_UPDATE, Response, Session, frame,
                                frame_header, literal, stream_frame)
from clients.transport.connect import os_error, tls_error
from clients.blocking.sockets import Connection, Stale, StreamConnection
from clients.http_api import Headers, HttpResponse
from clients.transport.phases import ConnectStamps

try:
    from clients.base import PhaseTimeout
except ImportError:                     # pragma: no cover
    from clients.base import ConnectError as PhaseTimeout  # type: ignore[assignment]

BUFFER = 256 * 1024


class BlockingH2Transport:
    """One HTTP/2 connection, one stream at a time, blocking."""

    version = "2"
    # h2 is not used on this path: the row's engine name says so through this
    path_name = f"blocking socket, HTTP/2 framed here, hpack {hpack.__version__}"

    def __init__(self, target: Target, *, timeout_s: float = 30.0,
                 connect: Callable[[tuple[str, int], float], socket.socket]
                 = socket.create_connection,
                 wrap: Callable[[socket.socket], Connection] = StreamConnection,
                 clock: Callable[[], int] = clock_ns) -> None:
        """connect opens the TCP connection, wrap makes the (TLS) socket a Connection,
        clock gives nanoseconds: tests replace them to run the transport in memory
        (tests/unit/test_blocking_h2.py)."""
        if target.dns is not None or getattr(target, "resumption", None):
            raise ValueError("the blocking HTTP/2 path has no DNS step and no resumption")
        self.target = target
        self.timeout_s = timeout_s
        self.timeout_ns = int(timeout_s * 1e9)
        self.tls = target.tls is not False
        self._ssl: ssl.SSLContext | None = None
        if self.tls:
            from base.client_tls import client_context
            self._ssl = client_context(target.ca, ["h2"], target.tls_version)
        scheme = b"https" if self.tls else b"http"
        self._fixed = (literal(b":scheme", scheme)
                       + literal(b":authority", target.authority.encode()))
        self._blocks: dict[tuple, bytes] = {}     # request -> its header block
        self._open, self._wrap, self._clock = connect, wrap, clock
        self.sock: Connection | None = None
        self.local_port: int | None = None
        self._buf = bytearray(BUFFER)
        self._view = memoryview(self._buf)
        self._pos = self._have = 0          # unparsed bytes are _buf[_pos:_have]
        self._sockto = 0.0
        self._in_flight = 0                 # the stream of the request sent last

    # ------------------------------------------------------------------ connection

    def _connect(self, deadline: int) -> ConnectStamps:
        t0 = self._clock()
        stamps = ConnectStamps(t0)
        target = self.target
        where = f"{target.host}:{target.port}"
        remaining = (deadline - t0) / 1e9
        if remaining <= 0:
            raise RequestTimeout(f"no complete response within {self.timeout_s} s")
        step = min(remaining, getattr(target, "connect_timeout_s", None) or remaining)
        try:
            raw = self._open((target.host, target.port), step)
        except TimeoutError:
            raise PhaseTimeout(f"HTTP/2 to {where}: TCP connect: no answer within "
                               f"{step:g} s") from None
        except OSError as exc:
            raise os_error(exc, where, "TCP connect", "HTTP/2") from exc
        stamps.tcp = self._clock()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self._ssl is not None:
                raw = self._handshake(raw, where)     # the TLS socket takes the fd over
                stamps.handshake = self._clock()
        except BaseException:
            raw.close()
            raise
        sock = self._wrap(raw)
        try:
            sock.set_timeout(self.timeout_s)
            self._sockto = self.timeout_s
            sock.sendall(OPENING)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.local_port = sock.local_port
        self._pos = self._have = 0
        self._session = Session()               # what the connection knows (framing core)
        self._t_read = 0                        # when the last read returned
        return stamps

    def _handshake(self, sock: socket.socket, where: str) -> socket.socket:
        try:
            tls = self._ssl.wrap_socket(sock, server_hostname=self.target.server_name)
        except TimeoutError:
            raise PhaseTimeout(f"HTTP/2 to {where}: TLS handshake: no answer within "
                               f"{sock.gettimeout():g} s") from None
        except ssl.SSLError as exc:
            raise tls_error(exc, where, "HTTP/2") from exc
        except OSError as exc:
            raise os_error(exc, where, "TLS handshake", "HTTP/2") from exc
        alpn = tls.selected_alpn_protocol()
        if alpn != "h2":
            tls.close()
            raise FallbackError(f"asked for h2 via ALPN, server selected {alpn!r}")
        return tls

    def _drop(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        self._pos = self._have = 0

    def close(self) -> None:
        self._drop()

    # ------------------------------------------------------------------ requests

    def fetch_sync(self, method: bytes, path: bytes, headers: Headers,
                   body: bytes) -> tuple[HttpResponse, bytes, int, None]:
        return self.receive_sync(self.send_sync(method, path, headers, body))

    def send_sync(self, method: bytes, path: bytes, headers: Headers,
                  body: bytes) -> "_Pending":
        key = (method, path, tuple(headers), len(body))
        block = self._blocks.get(key)
        if block is None:
            block = (literal(b":method", method) + self._fixed + literal(b":path", path)
                     + b"".join(literal(k, v) for k, v in headers)
                     + literal(b"content-length", b"%d" % len(body)))
            if len(self._blocks) < 64:
                self._blocks[key] = block
        pending = _Pending(block, body, self._clock() + self.timeout_ns)
        self._send(pending)
        return pending

    def receive_sync(self, pending: "_Pending") -> tuple[HttpResponse, bytes, int, None]:
        while True:
            try:
                return self._receive(pending)
            except Stale:
                self._drop()
                if pending.retried or pending.opened is not None:
                    raise ConnectionLost("HTTP/2 connection closed before any response "
                                         "frame") from None
                pending.retried = True  # the server closed the idle connection: once more
                self._send(pending)
            except BaseException:
                self._drop()
                raise

    def response_waiting(self) -> bool:
        """Whether a response frame (HEADERS, DATA or RST_STREAM) of the request in
        flight has already arrived. What is there is read without waiting and looked
        at, not consumed: the server's WINDOW_UPDATE for the request body, a PING or
        SETTINGS are no response."""
        sock, stream = self.sock, self._in_flight
        if sock is None or not stream:
            return False
        if sock.readable_now():
            self._read_available()
        pos, have, buf = self._pos, self._have, self._buf
        while pos + 9 <= have:
            if (buf[pos + 3] in RESPONSE_FRAMES
                    and int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF == stream):
                return True
            pos += 9 + int.from_bytes(buf[pos:pos + 3], "big")
        return False

    def _read_available(self) -> None:
        """One read of what is there, without waiting (errors and EOF are left to the
        next blocking read, which reports them)."""
        if self._pos == self._have:
            self._pos = self._have = 0
        if self._have == len(self._buf):
            return
        n = self.sock.recv_now(self._view[self._have:])
        if n:
            self._have += n
            self._t_read = self._clock()

    def _send(self, pending: "_Pending") -> None:
        while True:
            opened = None
            if self.sock is None:
                opened = self._connect(pending.deadline)
            elif self._session.goaway is not None:
                self._drop()                      # the server is going away: a new one
                continue
            pending.opened = opened
            stream = pending.stream = self._in_flight = self._session.new_stream()
            try:
                self._write_request(pending, stream)
                pending.t_sent = self._clock()
                return
            except ClientError:
                self._drop()
                raise
            except OSError as exc:
                self._drop()
                if opened is not None or pending.retried:
                    raise ConnectionLost(f"HTTP/2 send failed: {exc}") from exc
                pending.retried = True            # a stale kept connection: once more

    def _write_request(self, pending: "_Pending", stream: int) -> None:
        block, body = pending.block, pending.body
        out = [frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), stream, block)]
        session = self._session
        sent, stream_window = 0, session.peer_window
        while sent < len(body):
            # The stream's window and the connection's; wait for a WINDOW_UPDATE when
            # one is spent (large request bodies only).
            room = min(stream_window - sent, session.send_window, session.peer_frame)
            if room <= 0:
                if out:
                    self.sock.sendall(b"".join(out))
                    out = []
                got = self._frame_in(pending.deadline, pending)
                if got is not None:
                    if got[0] != WINDOW_UPDATE:
                        raise ConnectionLost("HTTP/2 server answered before the request "
                                             "body was sent")
                    stream_window += int.from_bytes(got[2][:4], "big") & 0x7FFFFFFF
                continue
            chunk = body[sent:sent + room]
            sent += len(chunk)
            session.send_window -= len(chunk)
            out.append(frame(DATA, END_STREAM if sent == len(body) else 0, stream, chunk))
        if out:
            self.sock.sendall(b"".join(out))

    # ------------------------------------------------------------------ frames in

    def _fill(self, need: int, deadline: int) -> None:
        """Read until `need` unparsed bytes are buffered (self._t_read: the last read)."""
        buf = self._buf
        if self._pos and (self._have == self._pos or len(buf) - self._pos < need):
            rest = self._have - self._pos             # move the unparsed bytes down
            buf[:rest] = buf[self._pos:self._have]
            self._pos, self._have = 0, rest
        if len(buf) < need:                           # a frame larger than the buffer
            self._buf = buf = buf + bytearray(need - len(buf))
            self._view = memoryview(buf)
        while self._have - self._pos < need:
            remaining = (deadline - self._clock()) / 1e9
            if remaining <= 0:
                raise RequestTimeout(f"no complete response within {self.timeout_s} s")
            if remaining < self._sockto * 0.95:
                self.sock.set_timeout(remaining)
                self._sockto = remaining
            try:
                n = self.sock.recv_into(self._view[self._have:])
            except TimeoutError:
                raise RequestTimeout(f"no complete response within {self.timeout_s} s") \
                    from None
            except OSError as exc:
                raise ConnectionLost(f"HTTP/2 receive failed: {exc}") from exc
            self._t_read = self._clock()
            if n == 0:
                raise ConnectionLost("HTTP/2 connection closed (EOF)")
            self._have += n

    def _next_frame(self, deadline: int) -> tuple[int, int, int, bytes, int]:
        """(type, flags, stream, payload, time of the read that completed it)."""
        self._fill(9, deadline)
        kind, flags, stream, length = frame_header(self._buf[self._pos:self._pos + 9],
                                                   self._session.first)
        self._session.first = False
        self._fill(9 + length, deadline)
        start = self._pos + 9
        payload = bytes(self._buf[start:start + length])
        self._pos = start + length
        if self._pos == self._have:
            self._pos = self._have = 0
        return kind, flags, stream, payload, self._t_read

    def _frame_in(self, deadline: int, pending: "_Pending"
                  ) -> tuple[int, int, bytes, int] | None:
        """Read one frame and handle the connection's part of it; a frame of the
        request's stream comes back as (type, flags, payload, time)."""
        kind, flags, stream, payload, t = self._next_frame(deadline)
        if stream == 0:
            reply = self._session.control(kind, flags, payload, pending.stream)
            if reply is not None:
                self.sock.sendall(reply)
            return None
        mine = stream_frame(kind, flags, stream, payload, pending.stream)
        return None if mine is None else (*mine, t)

    def _receive(self, pending: "_Pending") -> tuple[HttpResponse, bytes, int, None]:
        deadline, session = pending.deadline, self._session
        stream = Response(session, pending.stream)
        response: HttpResponse | None = None
        got_any = False
        while True:
            try:
                got = self._frame_in(deadline, pending)
            except ConnectionLost:
                if not got_any and pending.opened is None:
                    raise Stale() from None
                raise
            got_any = True
            if got is None:
                continue
            kind, flags, payload, t = got
            ended = stream.frame(kind, flags, payload)
            if stream.head_done:        # stamped by the read that completed the head
                response = self._response(stream, t, pending)
            if ended:
                break
        reopen = session.window_reopen()
        if reopen is not None:
            self.sock.sendall(reopen)
        if session.goaway is not None:
            self._drop()
        parts = stream.parts
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        response.t_sent_ns, response.opened = pending.t_sent, pending.opened
        return response, raw, t, None

    def _response(self, stream: Response, t: int, pending: "_Pending") -> HttpResponse:
        new = pending.opened is not None
        connect_ns = None
        if new:
            opened = pending.opened
            connect_ns = (opened.handshake or opened.tcp) - opened.start
        return HttpResponse(stream.status, stream.headers, t, new, connect_ns,
                            self.local_port)


class _Pending:
    """A request sent on this connection whose response is not read yet."""

    __slots__ = ("block", "body", "deadline", "stream", "opened", "t_sent", "retried")

    def __init__(self, block: bytes, body: bytes, deadline: int) -> None:
        self.block, self.body, self.deadline = block, body, deadline
        self.stream = 0
        self.opened: ConnectStamps | None = None
        self.t_sent = 0
        self.retried = False


