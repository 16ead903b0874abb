"""HTTP/1.1 over one blocking socket: the python engine's closed-loop path for one user.

At concurrency 1 every microsecond of client CPU is in series with the server's
(benchmarks/README.md): an asyncio request costs a task step, futures, a protocol
callback and a parser callback per header, ~100,000 instructions with the recording.
When a worker has exactly one user on one keep-alive connection
(harness.run.load.loadgen's "blocking" client path), the same request runs here instead: one
`sendall`, `recv_into` a preallocated buffer, the header block split in C, the body
read straight into its own buffer (one copy from the kernel for a 154 KB embedding).

Same contract as `HttpTransport.fetch` (clients.http_api), blocking: returns
(HttpResponse, body, t_received, None). It is also split in two, `send_sync` and
`receive_sync`, so a caller can do its own work while the server does (the overlapped
closed loop, harness.run.load.blocking_loop); `response_waiting` says whether that work ran
past the response's arrival. Same stamps as clients.transport.http1: t_first_byte is the
clock_ns() taken right after the read that brought the status line, t_received the
one after the read that completed the body (one stamp per read, as data_received
stamps), and the lifecycle's (clients.transport.phases): when a new connection's TCP connect
finished and when the request was written. Same checks: a status line that is not
HTTP/1.1 is a FallbackError, a bad head a ProtocolViolation, EOF or a reset
mid-response ConnectionLost; 1xx responses are skipped; Content-Length, chunked and
read-until-close bodies; `Connection: close` ends the connection after the response.
A reused connection that turns out closed before any response byte (the server's
keep-alive timeout) is retried once on a new one, as libcurl does and as the asyncio
transport avoids by seeing the close while idle.

Timeouts: the whole request (connect, send, every read) must finish within
`timeout_s` of its start; the kernel enforces each read's share (SO_RCVTIMEO /
SO_SNDTIMEO, lowered when less than 95% of it remains, so a stalled read ends at most
5% of the timeout late), so a request on time costs no timeout syscalls. A timeout
raises `RequestTimeout` (kind "timeout") and closes the connection (its state is
unknown).

Cleartext only (no TLS, no DNS step through the lab's resolver): the selection in
clients.blocking.rest uses the asyncio transport otherwise. The connection and the clock
are parameters (clients.blocking.sockets): tests drive the transport from scripted bytes
on an explicit clock, in memory (tests/unit/test_blocking_h1.py).
"""

from __future__ import annotations

from typing import Callable

from clients.base import (ConnectError, ConnectionLost, PhaseTimeout,
                          ProtocolViolation, Refused, RequestTimeout, Target, clock_ns)
from clients.blocking.sockets import Connection, Stale, TcpConnection
from clients.framing.h1 import (CHUNKED, LENGTH, NONE, ChunkedDecoder, body_plan, next_head,
                                value)
from clients.http_api import Headers, HttpResponse
from clients.transport.http1 import RequestHead
from clients.transport.phases import ConnectStamps

BUFFER = 256 * 1024             # the receive buffer; larger bodies get one of their own


class BlockingH1Transport:
    """One keep-alive HTTP/1.1 connection, one request at a time, blocking."""

    version = "1.1"
    path_name = "blocking socket"

    def __init__(self, target: Target, *, timeout_s: float = 30.0,
                 connect: Callable[[str, int, float], Connection] = TcpConnection.open,
                 clock: Callable[[], int] = clock_ns) -> None:
        if target.tls or target.dns is not None:
            raise ValueError("the blocking HTTP/1.1 path is cleartext, without a DNS step")
        self.target = target
        self.timeout_s = timeout_s
        self.timeout_ns = int(timeout_s * 1e9)
        self._open, self._clock = connect, clock
        self.sock: Connection | None = None
        self.local_port: int | None = None
        self._buf = bytearray(BUFFER)
        self._view = memoryview(self._buf)
        self._have = 0                  # bytes in _buf not yet consumed (pipelined: never)
        self._sockto = 0.0              # the SO_RCVTIMEO/SNDTIMEO now set
        self._head = RequestHead(f"host: {target.authority}\r\n".encode())

    # ------------------------------------------------------------------ connection

    def _connect(self, deadline: int) -> int:
        t0 = self._clock()
        remaining = (deadline - t0) / 1e9
        if remaining <= 0:
            raise RequestTimeout(f"no complete response within {self.timeout_s} s")
        step = getattr(self.target, "connect_timeout_s", None)
        where = f"HTTP/1.1 connect to {self.target.host}:{self.target.port}"
        try:
            sock = self._open(self.target.host, self.target.port,
                              min(remaining, step or remaining))
        except TimeoutError:
            if step is not None and step < remaining:
                raise PhaseTimeout(f"{where}: TCP connect: no answer within {step} s") \
                    from None
            raise RequestTimeout(f"{where}: no connection within {self.timeout_s} s") \
                from None
        except ConnectionRefusedError as exc:
            raise Refused(f"{where}: TCP connect: refused ({exc})") from exc
        except OSError as exc:
            raise ConnectError(f"{where} failed: {exc}") from exc
        self.sock = sock
        self._sockto = 0.0
        self._set_timeout(self.timeout_s)
        self.local_port = sock.local_port
        self._have = 0
        return self._clock() - t0

    def _set_timeout(self, seconds: float) -> None:
        self.sock.set_timeout(seconds)      # type: ignore[union-attr]
        self._sockto = seconds

    def _drop(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        self._have = 0

    def close(self) -> None:
        self._drop()

    # ------------------------------------------------------------------ requests

    def fetch_sync(self, method: bytes, path: bytes, headers: Headers,
                   body: bytes) -> tuple[HttpResponse, bytes | bytearray, int, None]:
        """One whole exchange (the blocking twin of HttpTransport.fetch)."""
        return self.receive_sync(self.send_sync(method, path, headers, body))

    def send_sync(self, method: bytes, path: bytes, headers: Headers,
                  body: bytes) -> "_Pending":
        """The first half of fetch_sync: connect if needed and send the request. The
        caller may work while the server does, then calls receive_sync()."""
        pending = _Pending(method, self._head.request(method, path, headers, body),
                           self._clock() + self.timeout_ns)
        self._send(pending)
        return pending

    def receive_sync(self, pending: "_Pending") -> tuple[HttpResponse, bytes | bytearray,
                                                         int, None]:
        """The second half: read the response to the request `pending` sent."""
        while True:
            try:
                return self._receive(pending)
            except Stale:
                self._drop()
                if pending.retried or pending.new:
                    raise ConnectionLost("HTTP/1.1 connection closed before any response "
                                         "byte") from None
                pending.retried = True  # the server closed the idle connection: once more
                self._send(pending)
            except BaseException:
                self._drop()            # unknown state: never reuse it
                raise

    def response_waiting(self) -> bool:
        """Whether response bytes are already waiting to be read (one poll, no wait)."""
        return self.sock is not None and self.sock.readable_now()

    def _send(self, pending: "_Pending") -> None:
        while True:
            new, connect_ns, opened = self.sock is None, None, None
            if new:
                t0 = self._clock()
                connect_ns = self._connect(pending.deadline)
                opened = ConnectStamps(t0, tcp=t0 + connect_ns)     # the lifecycle's
            elif self._sockto != self.timeout_s:
                self._set_timeout(self.timeout_s)     # lowered by a slow last request
            pending.new, pending.connect_ns, pending.opened = new, connect_ns, opened
            try:
                self.sock.sendall(pending.data)       # type: ignore[union-attr]
                pending.t_sent = self._clock()           # curl's pretransfer
                return
            except BlockingIOError:
                self._drop()
                raise RequestTimeout(f"no complete response within {self.timeout_s} s") \
                    from None
            except OSError as exc:
                self._drop()
                if new or pending.retried:
                    raise ConnectionLost(f"HTTP/1.1 send failed: {exc}") from exc
                pending.retried = True  # a stale keep-alive connection: once more

    def _recv(self, start: int, deadline: int, view: memoryview | None = None) -> int:
        """One blocking read into the buffer at `start` (or into `view`)."""
        remaining = (deadline - self._clock()) / 1e9
        if remaining <= 0:
            raise RequestTimeout(f"no complete response within {self.timeout_s} s")
        if remaining < self._sockto * 0.95:    # within 5% of the deadline, not 2x
            self._set_timeout(remaining)
        try:
            return self.sock.recv_into(self._view[start:] if view is None else view)  # type: ignore[union-attr]
        except BlockingIOError:         # SO_RCVTIMEO expired
            raise RequestTimeout(f"no complete response within {self.timeout_s} s") from None
        except OSError as exc:
            raise ConnectionLost(f"HTTP/1.1 receive failed: {exc}") from exc

    def _receive(self, pending: "_Pending") -> tuple[HttpResponse, bytes | bytearray, int,
                                                     None]:
        method, deadline, new = pending.method, pending.deadline, pending.new
        buf = self._buf
        have, t_first, t_last = self._have, 0, 0
        pos = 0                         # where this response's head starts
        while True:                     # the head (1xx heads skipped): the framing core's
            head, pos = next_head(buf, pos, have)
            if head is not None:
                break
            if have == BUFFER:
                raise ProtocolViolation("HTTP/1.1 response head larger than "
                                        f"{BUFFER} bytes")
            try:
                n = self._recv(have, deadline)
            except ConnectionLost:
                if not new and have == 0:
                    raise Stale() from None
                raise
            t = self._clock()
            if n == 0:
                if not new and have == 0:
                    raise Stale()
                raise ConnectionLost("connection closed mid-response (EOF)")
            if not t_first:
                t_first = t
            t_last = t
            have += n
        status, length, close = head.status, head.length, head.close
        t_end = t_last                  # the read that completed the head (and maybe the body)
        plan = body_plan(head, method)
        if plan == NONE:
            raw: bytes | bytearray = b""
            rest = pos
        elif plan == LENGTH:
            got = have - pos
            if length <= got:           # all here already (the usual small response)
                raw = bytes(buf[pos:pos + length])
                rest = pos + length
            else:                       # read the rest straight into the body's buffer
                out = bytearray(length)
                out[:got] = buf[pos:have]
                view = memoryview(out)
                while got < length:
                    n = self._recv(0, deadline, view[got:])
                    t_end = self._clock()
                    if n == 0:
                        raise ConnectionLost(f"connection closed mid-body ({got} of "
                                             f"{length} bytes)")
                    got += n
                raw, rest, have = out, 0, 0
        elif plan == CHUNKED:
            raw, left, t = self._chunked(pos, have, deadline)
            t_end = t or t_end
            rest = have = 0
            close = close or left
        else:                           # no length: the body runs to the connection's end
            parts = [bytes(buf[pos:have])]
            while True:
                n = self._recv(0, deadline)
                t_end = self._clock()
                if n == 0:
                    break
                parts.append(bytes(buf[:n]))
            raw, rest, have, close = b"".join(parts), 0, 0, True
        if have > rest:                 # bytes beyond this response: the server spoke
            close = True                # out of turn; never read them as the next one
        self._have = 0
        response = _HeadResponse(status, head.raw, head.low, t_first, new,
                                 pending.connect_ns, self.local_port)
        response.t_sent_ns, response.opened = pending.t_sent, pending.opened
        if close:
            self._drop()
        return response, raw, t_end, None

    def _chunked(self, pos: int, have: int, deadline: int) -> tuple[bytes, bool, int]:
        """A chunked body from buf[pos:have] on, decoded by the framing core: (body,
        bytes left over after it, time of the last read). Rare here (the servers send
        Content-Length)."""
        decoder, t = ChunkedDecoder(), 0
        parts = decoder.feed(bytes(self._buf[pos:have]))
        while not decoder.done:
            n = self._recv(0, deadline)
            t = self._clock()
            if n == 0:
                raise ConnectionLost("connection closed mid-body (chunked)")
            parts += decoder.feed(bytes(self._buf[:n]))
        return b"".join(parts), decoder.leftover, t


class _Pending:
    """A request sent on this connection whose response is not read yet."""

    __slots__ = ("method", "data", "deadline", "new", "connect_ns", "opened", "t_sent",
                 "retried")

    def __init__(self, method: bytes, data: bytes, deadline: int) -> None:
        self.method, self.data, self.deadline = method, data, deadline
        self.new, self.connect_ns, self.retried = False, None, False
        self.opened: ConnectStamps | None = None    # how its connection was opened, if new
        self.t_sent = 0                             # when the request was written


class _HeadResponse(HttpResponse):
    """An HttpResponse over the raw head: `header()` is two C-level searches in the
    lowercased head (no loop over lines in Python), `headers` is split only if asked."""

    __slots__ = ("_head", "_low")

    def __init__(self, status: int, head: bytes, low: bytes, t_first_byte_ns: int,
                 new_connection: bool, connect_ns: int | None, local_port: int | None) -> None:
        super().__init__(status, None, t_first_byte_ns, new_connection, connect_ns,
                         local_port, None)
        self._head, self._low = head, low

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            headers = []
            for line in self._head.split(b"\r\n")[1:]:
                name, _, text = line.partition(b":")
                headers.append((name.strip().lower(), text.strip()))
            self._headers = headers
        return self._headers

    def header(self, name: bytes) -> bytes | None:
        return value(self._head, self._low, b"\r\n" + name + b":")
