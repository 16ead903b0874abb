"""libcurl's easy interface, blocking: the curl engine's closed-loop path for one user.

clients.curl.transport drives a CurlMulti from the asyncio loop: per request a socket_action per
readiness event, Python socket and timer callbacks, futures and a task step, ~100,000
instructions of Python around libcurl's own work (benchmarks/README.md). When a worker
has exactly one user on one keep-alive connection (harness.run.load.loadgen's "blocking" client
path), none of that is needed: here one easy handle runs `perform()`, which loops
inside libcurl (poll, send, recv; pycurl releases the GIL around it) and returns when
the transfer ended. The connection stays in the handle's cache between requests.
For the overlapped loop (harness.run.load.blocking_loop) two easy handles take turns in
one CurlMulti driven from this thread (they share its connection cache, so the
connection is the same): `send_sync` adds one and performs once, which writes the
request; `receive_sync` selects/performs until that transfer ended and returns at once,
and `settle_sync` (called while the server works on the next request, sent on the other
handle) takes the ended transfer off the multi and builds its result. So between the
last response byte and the next request only libcurl's own work is in series.

Same contract as `CurlTransport.fetch`, blocking: (HttpResponse, body, t_received,
curl_phases). Same options (HTTP version, h2c prior knowledge, TLS verification and
version, SNI via CONNECT_TO, no session resumption, no User-Agent / Expect headers),
same protocol check (the negotiated version, FallbackError otherwise), same error
classes (clients.curl.transport's code sets), same header and body collection (the handle's own
`list.append` methods as callbacks: C calls), same wire accounting (CURLOPT_SOCKOPT-
FUNCTION -> clients.transport.wire.METER), same stale-connection retry.

Stamps: t_start is the caller's, taken just before `perform()` (or the multi's first
perform); t_received is the clock_ns() right after it returned, or after the multi
perform in which the transfer ended: libcurl has read the whole response, the same
"after libcurl read it" point the asyncio multi path stamps. There is no Python callback per
response to stamp the first byte in, so t_first_byte is t_start + libcurl's own
starttransfer (its first response byte, on CLOCK_MONOTONIC like clock_ns, counted from
its start of the transfer, which is a few microseconds after t_start): never later
than the true time, never before t_start, never after t_received.

Timeouts: CURLOPT_TIMEOUT_MS, the whole transfer (connect included); libcurl's code 28
is reported as `RequestTimeout` (kind "timeout"), as the asyncio path's watchdog
reports a request past its deadline.
"""

from __future__ import annotations

import pycurl

from clients.base import (ClientError, ConnectError, ConnectionLost, FallbackError,
                          ProtocolViolation, RequestTimeout, Target, clock_ns)

from clients.curl.easy import (CONNECT_ERRORS, E_HTTP2, INFO_VERSION, NO_HEADERS, NO_PROXY,
                               PHASE_INFOS, PHASE_NAMES, PROTOCOL_ERRORS, RECEIVE_BUFFER,
                               STALE_CONNECTION, TLS_VERSIONS, VERSION_NAMES, CurlSocket,
                               final_block, track_socket, url_host)
from clients.http_api import Headers, HttpResponse
from clients.transport.wire import METER

_E_TIMEOUT = 28
NUM_CONNECTS = pycurl.NUM_CONNECTS
INFO_HTTP_VERSION = pycurl.INFO_HTTP_VERSION
_STARTTRANSFER = pycurl.STARTTRANSFER_TIME_T


_CALL_MULTI_PERFORM = pycurl.E_CALL_MULTI_PERFORM
_SELECT_S = 1.0         # longest wait between two of libcurl's timeout checks


class _Handle:
    """One easy handle with what was last set on it (so a request like the last one
    costs no setopt) and the header lines and body pieces libcurl hands it (the lists'
    own append methods as callbacks: C calls)."""

    __slots__ = ("attached", "body", "curl", "getinfo", "hdrs", "lines", "method", "parts",
                 "path", "setopt")

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        self.setopt, self.getinfo = curl.setopt, curl.getinfo
        self.lines: list[bytes] = []
        self.parts: list[bytes] = []
        curl.setopt(pycurl.HEADERFUNCTION, self.lines.append)
        curl.setopt(pycurl.WRITEFUNCTION, self.parts.append)
        self.path: bytes | None = None
        self.method: bytes | None = None
        self.body: bytes | None = None      # the POSTFIELDS libcurl holds (a POST's)
        self.hdrs: Headers | None = None
        self.attached = False               # to the overlap's multi


class _Sent:
    """A transfer started by send_sync: its handle, when, and whether it was retried."""
    __slots__ = ("handle", "retried", "t0")

    def __init__(self, handle: _Handle) -> None:
        self.handle, self.t0, self.retried = handle, 0, False


class _Received:
    """A transfer receive_sync saw end, not yet taken off the multi (settle_sync does)."""
    __slots__ = ("code", "message", "sent", "t_end")

    def __init__(self, sent: _Sent, t_end: int, code: int | None, message: str) -> None:
        self.sent, self.t_end, self.code, self.message = sent, t_end, code, message


class _Outcome:
    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: ClientError | None = None


class CurlEasyTransport:
    """One libcurl connection, one request at a time, blocking."""

    @property
    def path_name(self) -> str:
        return "libcurl multi, blocking" if self._multi is not None else "libcurl easy"

    def __init__(self, target: Target, *, version: str, timeout_s: float = 30.0) -> None:
        if version not in INFO_VERSION:
            raise ValueError(f"HTTP version must be one of {sorted(INFO_VERSION)}")
        self.target = target
        self.version = version
        self.timeout_s = timeout_s
        tls = target.tls if target.tls is not None else version != "1.1"
        if version == "3" and not tls:
            raise ValueError("HTTP/3 runs over QUIC, which is always TLS: tls=False is invalid")
        self.tls = tls
        if version == "1.1":
            self._http_version = pycurl.CURL_HTTP_VERSION_1_1
        elif version == "2":
            self._http_version = (pycurl.CURL_HTTP_VERSION_2TLS if tls
                                  else pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)
        else:
            self._http_version = pycurl.CURL_HTTP_VERSION_3ONLY
        self._want = INFO_VERSION[version]
        name, host = url_host(target.server_name), url_host(target.host)
        self._prefix = f"{'https' if tls else 'http'}://{name}:{target.port}".encode()
        self._connect_to = ([f"{name}:{target.port}:{host}:{target.port}"]
                            if target.server_name != target.host else None)
        self._track_sockets = version != "3"
        self._socks: dict[int, CurlSocket] = {}
        self._easy = self._new_handle()     # fetch_sync's without a multi; send_sync's next
        self._spare: _Handle | None = None  # the overlap's second handle, from send_sync on
        self._multi: pycurl.CurlMulti | None = None     # from the first send_sync on
        self._flying: _Sent | None = None   # the transfer in the multi, not yet ended
        self._ended = False     # whether the last perform ended it, and when
        self._t_ended = 0
        self._outcome = _Outcome()

    def _new_handle(self) -> _Handle:
        c = pycurl.Curl()
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.PROXY, NO_PROXY)
        c.setopt(pycurl.HTTP_VERSION, self._http_version)
        c.setopt(pycurl.BUFFERSIZE, RECEIVE_BUFFER)
        c.setopt(pycurl.TIMEOUT_MS, max(1, int(self.timeout_s * 1000)))
        if self._connect_to:
            c.setopt(pycurl.CONNECT_TO, self._connect_to)
        if self.tls:
            if self.target.ca is not None:
                c.setopt(pycurl.CAINFO, str(self.target.ca))
            c.setopt(pycurl.SSL_SESSIONID_CACHE, 0)
            if self.target.tls_version is not None and self.version != "3":
                c.setopt(pycurl.SSLVERSION, TLS_VERSIONS[self.target.tls_version])
        c.setopt(pycurl.SOCKOPTFUNCTION, self._on_sockopt)
        return _Handle(c)

    # ------------------------------------------------------------------ requests

    def _prepare(self, h: _Handle, method: bytes, path: bytes, headers: Headers,
                 body: bytes) -> None:
        setopt = h.setopt
        if path != h.path:
            setopt(pycurl.URL, self._prefix + path)
            h.path = path
        if method == b"POST":
            if h.method != b"POST":
                setopt(pycurl.CUSTOMREQUEST, None)
                setopt(pycurl.NOBODY, 0)
                h.method = b"POST"
                h.body = None
            # POSTFIELDS (which makes it a POST) is copied by libcurl and stays set: the
            # same bytes as the last POST's need not be handed over again.
            if body != h.body:
                setopt(pycurl.POSTFIELDS, body)
                h.body = body
        elif method == b"GET" and not body:
            if h.method != b"GET":
                setopt(pycurl.CUSTOMREQUEST, None)
                setopt(pycurl.NOBODY, 0)
                setopt(pycurl.HTTPGET, 1)
                h.method = b"GET"
                h.body = None
        else:
            setopt(pycurl.NOBODY, 1 if method == b"HEAD" else 0)
            if method != b"HEAD":
                setopt(pycurl.POSTFIELDS, body)
            setopt(pycurl.CUSTOMREQUEST, method.decode())
            h.method = None
            h.body = None
        if headers is not h.hdrs:
            setopt(pycurl.HTTPHEADER, [k + b": " + v for k, v in headers] + NO_HEADERS)
            h.hdrs = headers

    def fetch_sync(self, method: bytes, path: bytes, headers: Headers, body: bytes
                   ) -> tuple[HttpResponse, bytes, int, dict[str, int]]:
        """One whole exchange (the blocking twin of CurlTransport.fetch)."""
        if self._multi is not None:     # the connection lives in the multi's cache now
            return self.settle_sync(self.receive_sync(self.send_sync(method, path, headers,
                                                                     body)))
        h = self._easy
        self._prepare(h, method, path, headers, body)
        lines, perform, getinfo = h.lines, h.curl.perform, h.getinfo
        retried = False
        while True:
            t0 = clock_ns()
            code, message = None, ""
            try:
                perform()
            except pycurl.error as exc:
                code, message = exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
            t_end = clock_ns()
            if (code in STALE_CONNECTION and not retried and not lines
                    and getinfo(NUM_CONNECTS) == 0):
                retried = True          # a reused connection the server had closed
                h.parts.clear()
                continue
            break
        return self._result(h, t0, t_end, code, message)

    # The same exchange in three calls (the overlapped closed loop,
    # harness.run.load.blocking_loop): send_sync adds a handle to a CurlMulti and drives
    # it once, which writes the request on the kept connection; receive_sync drives it
    # until the transfer ended; settle_sync takes it off the multi and builds the result.
    # The next send_sync uses the other handle, so it can go out before settle_sync.
    # From the first send_sync on, the connection lives in the multi's cache, so
    # fetch_sync goes through the multi too.

    def send_sync(self, method: bytes, path: bytes, headers: Headers, body: bytes) -> _Sent:
        if self._flying is not None:    # a transfer whose receive_sync was cut off
            self._remove(self._flying.handle)
            self._flying = None
        if self._multi is None:
            self._multi = pycurl.CurlMulti()
            self._spare = self._new_handle()
        h, self._easy, self._spare = self._easy, self._spare, self._easy  # take turns
        if h.attached:                  # its last transfer was never settled
            self._remove(h)
        self._prepare(h, method, path, headers, body)
        sent = _Sent(h)
        self._start(sent)
        return sent

    def receive_sync(self, sent: _Sent) -> _Received:
        """Wait until the transfer `sent` started has ended (no result built yet)."""
        multi = self._multi
        while True:
            # No perform before the first wait: the one that sent the request (or
            # response_waiting's) handed libcurl everything there was; libcurl's timeout
            # is 0 when it has work left without a socket event.
            while not self._ended:
                wait = multi.timeout()
                if wait:
                    multi.select(_SELECT_S if wait < 0 else min(_SELECT_S, wait / 1000))
                self._drive()
            self._flying = None
            failed = multi.info_read()[2]
            if not failed:
                return _Received(sent, self._t_ended, None, "")
            _, code, message = failed[0]
            h = sent.handle
            if (code in STALE_CONNECTION and not sent.retried and not h.lines
                    and h.getinfo(NUM_CONNECTS) == 0):
                sent.retried = True     # a reused connection the server had closed
                self._remove(h)
                self._start(sent)
                continue
            return _Received(sent, self._t_ended, code, message)

    def settle_sync(self, received: _Received
                    ) -> tuple[HttpResponse, bytes, int, dict[str, int]]:
        """The result of a transfer receive_sync saw end (HttpResponse, body, t_received,
        libcurl's phases), or the error it ended with."""
        sent = received.sent
        h = sent.handle
        self._multi.remove_handle(h.curl)
        h.attached = False
        return self._result(h, sent.t0, received.t_end, received.code, received.message)

    def response_waiting(self) -> bool:
        """Whether the response of the transfer in flight has begun to arrive: what is
        there is handed to libcurl (no wait), and a response header line or body byte
        counts (an HTTP/2 WINDOW_UPDATE or PING does not)."""
        flying = self._flying
        if flying is None:
            return False
        if not self._ended and self._multi.select(0) > 0:
            self._drive()
        return bool(flying.handle.lines or flying.handle.parts)

    def _start(self, sent: _Sent) -> None:
        sent.t0 = clock_ns()
        self._multi.add_handle(sent.handle.curl)
        sent.handle.attached = True
        self._flying = sent
        self._ended = False
        self._drive()

    def _drive(self) -> bool:
        """Let libcurl do what it can without waiting; whether the transfer ended (then
        stamped: `_t_ended`, right after the perform in which it did). A settled or
        unsettled transfer that already ended is not counted as running."""
        perform = self._multi.perform
        while True:
            ret, running = perform()
            if ret != _CALL_MULTI_PERFORM:
                if running == 0:
                    self._t_ended = clock_ns()
                    self._ended = True
                    return True
                return False

    def _remove(self, h: _Handle) -> None:
        """Take a handle off the multi, dropping what its last transfer received."""
        self._multi.remove_handle(h.curl)
        h.attached = False
        h.lines.clear()
        h.parts.clear()

    def _result(self, h: _Handle, t0: int, t_end: int, code: int | None, message: str
                ) -> tuple[HttpResponse, bytes, int, dict[str, int]]:
        """The ended transfer's response, or the error it ended with."""
        lines, parts, getinfo = h.lines, h.parts, h.getinfo
        try:
            phases = dict(zip(PHASE_NAMES, map(getinfo, PHASE_INFOS)))
            outcome = self._outcome
            outcome.error = None
            start, end, status = final_block(lines, outcome)
            if code is not None:
                raise outcome.error or self._error(code, message, end >= 0, phases)
            if end < 0:
                raise outcome.error or ProtocolViolation(
                    "transfer ended without a complete header block")
            got = getinfo(INFO_HTTP_VERSION)
            if got != self._want:
                raise FallbackError(
                    f"asked for HTTP/{self.version}, server answered HTTP/"
                    f"{VERSION_NAMES.get(got, got)} ({self._prefix.decode()})")
            if getinfo(NUM_CONNECTS):
                new = True
                connect_ns = 1000 * (phases["appconnect"] if self.tls else phases["connect"])
            else:
                new, connect_ns = False, None
            t_first = t0 + 1000 * phases["starttransfer"]
            response = HttpResponse(status, None, t_first if t_first < t_end else t_end, new,
                                    connect_ns, None, lines[start + 1:end])
            return response, parts[0] if len(parts) == 1 else b"".join(parts), t_end, phases
        finally:
            lines.clear()
            parts.clear()

    def _error(self, code: int, message: str, headed: bool,
               phases: dict[str, int]) -> ClientError:
        where = f"{self._prefix.decode()} via {self.target.host}:{self.target.port}"
        text = f"HTTP/{self.version} {where}: curl error {code}: {message}"
        if code == _E_TIMEOUT:
            return RequestTimeout(f"no complete response within {self.timeout_s} s ({text})")
        if code in PROTOCOL_ERRORS:
            return ProtocolViolation(text)
        if not headed:
            if (code in CONNECT_ERRORS or message.startswith("Failed to connect")
                    or not phases.get("pretransfer")):
                return ConnectError(text)
            if self._http_version == pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE and (
                    code == E_HTTP2 or "SETTINGS" in message):
                return FallbackError(f"asked for h2c (prior knowledge), the server did not "
                                     f"answer in HTTP/2: {text}")
        return ConnectionLost(text)

    # ------------------------------------------------------------------ sockets

    def _on_sockopt(self, fd: int, purpose: int) -> int:
        if self._track_sockets:
            track_socket(self._socks, fd)
        return 0                        # CURL_SOCKOPT_OK

    def close(self) -> None:
        easy, self._easy = self._easy, None
        if easy is None:
            return
        handles = [h for h in (easy, self._spare) if h is not None]
        multi, self._multi, self._spare, self._flying = self._multi, None, None, None
        self._shut(multi, handles)

    def _shut(self, multi: pycurl.CurlMulti | None, handles: list[_Handle]) -> None:
        """Close the handles and the multi (with the connections in its cache), after
        taking the sockets' last counts."""
        for sock in self._socks.values():
            if sock.alive():
                sock.read()             # last counts before libcurl closes them
        if multi is not None:
            for h in handles:
                if h.attached:          # a transfer cut off, or not settled
                    multi.remove_handle(h.curl)
                    h.attached = False
            multi.close()               # closes the connections in its cache
        for h in handles:
            h.curl.close()
        for sock in self._socks.values():
            sock.release()
            METER.closing(sock)         # type: ignore[arg-type]
        self._socks.clear()
