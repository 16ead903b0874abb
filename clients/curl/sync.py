"""libcurl's easy interface, blocking: the curl engine's closed-loop path for one user.

clients.curl.transport drives a CurlMulti from the asyncio loop: per request a socket_action per
readiness event, Python socket and timer callbacks, futures and a task step, ~100,000
instructions of Python around libcurl's own work (benchmarks/README.md). When a worker
has exactly one user on one keep-alive connection (harness.run.load.loadgen's "blocking" client
path), none of that is needed: here one easy handle runs `perform()`, which loops
inside libcurl (poll, send, recv; pycurl releases the GIL around it) and returns when
the transfer ended. The connection stays in the handle's cache between requests.
For the overlapped loop (harness.run.load.blocking_loop) the same handle runs in a CurlMulti
driven from this thread, `send_sync` then `receive_sync`: one perform to write the
request, then select/perform until the transfer ended.

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

from clients.curl.easy import (CONNECT_ERRORS, E_HTTP2, INFO_VERSION, NO_HEADERS, PHASE_INFOS,
                               PHASE_NAMES, PROTOCOL_ERRORS, RECEIVE_BUFFER, STALE_CONNECTION,
                               TLS_VERSIONS, VERSION_NAMES, CurlSocket, final_block, track_socket,
                               url_host)
from clients.http_api import Headers, HttpResponse
from clients.transport.wire import METER

_E_TIMEOUT = 28
NUM_CONNECTS = pycurl.NUM_CONNECTS
INFO_HTTP_VERSION = pycurl.INFO_HTTP_VERSION
_STARTTRANSFER = pycurl.STARTTRANSFER_TIME_T


_CALL_MULTI_PERFORM = pycurl.E_CALL_MULTI_PERFORM
_SELECT_S = 1.0         # longest wait between two of libcurl's timeout checks


class _Sent:
    """A transfer started by send_sync: when, and whether it was already retried."""
    __slots__ = ("t0", "retried")

    def __init__(self) -> None:
        self.t0, self.retried = 0, False


class _Outcome:
    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: ClientError | None = None


class CurlEasyTransport:
    """One libcurl easy handle (one connection), one request at a time, blocking."""

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
        self._track_sockets = version != "3"
        self._socks: dict[int, CurlSocket] = {}
        self.lines: list[bytes] = []
        self.parts: list[bytes] = []
        c = self.curl = pycurl.Curl()
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.HTTP_VERSION, self._http_version)
        c.setopt(pycurl.BUFFERSIZE, RECEIVE_BUFFER)
        c.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout_s * 1000)))
        if target.server_name != target.host:
            c.setopt(pycurl.CONNECT_TO, [f"{name}:{target.port}:{host}:{target.port}"])
        if tls:
            if target.ca is not None:
                c.setopt(pycurl.CAINFO, str(target.ca))
            c.setopt(pycurl.SSL_SESSIONID_CACHE, 0)
            if target.tls_version is not None and version != "3":
                c.setopt(pycurl.SSLVERSION, TLS_VERSIONS[target.tls_version])
        c.setopt(pycurl.SOCKOPTFUNCTION, self._on_sockopt)
        c.setopt(pycurl.HEADERFUNCTION, self.lines.append)
        c.setopt(pycurl.WRITEFUNCTION, self.parts.append)
        self._setopt, self._getinfo, self._perform = c.setopt, c.getinfo, c.perform
        self._path: bytes | None = None
        self._hdrs: Headers | None = None
        self._method: bytes | None = None
        self._body: bytes | None = None     # the POSTFIELDS libcurl holds (a POST's)
        self._multi: pycurl.CurlMulti | None = None     # from the first send_sync on
        self._ended = False     # whether the last perform ended the transfer, and when
        self._t_ended = 0
        self._outcome = _Outcome()

    # ------------------------------------------------------------------ requests

    def _prepare(self, method: bytes, path: bytes, headers: Headers, body: bytes) -> None:
        setopt = self._setopt
        if path != self._path:
            setopt(pycurl.URL, self._prefix + path)
            self._path = path
        if method == b"POST":
            if self._method != b"POST":
                setopt(pycurl.CUSTOMREQUEST, None)
                setopt(pycurl.NOBODY, 0)
                self._method = b"POST"
                self._body = None
            # POSTFIELDS (which makes it a POST) is copied by libcurl and stays set: the
            # same bytes as the last POST's need not be handed over again.
            if body != self._body:
                setopt(pycurl.POSTFIELDS, body)
                self._body = body
        elif method == b"GET" and not body:
            if self._method != b"GET":
                setopt(pycurl.CUSTOMREQUEST, None)
                setopt(pycurl.NOBODY, 0)
                setopt(pycurl.HTTPGET, 1)
                self._method = b"GET"
                self._body = None
        else:
            setopt(pycurl.NOBODY, 1 if method == b"HEAD" else 0)
            if method != b"HEAD":
                setopt(pycurl.POSTFIELDS, body)
            setopt(pycurl.CUSTOMREQUEST, method.decode())
            self._method = None
            self._body = None
        if headers is not self._hdrs:
            setopt(pycurl.HTTPHEADER, [k + b": " + v for k, v in headers] + NO_HEADERS)
            self._hdrs = headers

    def fetch_sync(self, method: bytes, path: bytes, headers: Headers, body: bytes
                   ) -> tuple[HttpResponse, bytes, int, dict[str, int]]:
        """One whole exchange (the blocking twin of CurlTransport.fetch)."""
        if self._multi is not None:     # the connection lives in the multi's cache now
            return self.receive_sync(self.send_sync(method, path, headers, body))
        self._prepare(method, path, headers, body)
        lines, parts, getinfo = self.lines, self.parts, self._getinfo
        retried = False
        while True:
            t0 = clock_ns()
            code, message = None, ""
            try:
                self._perform()
            except pycurl.error as exc:
                code, message = exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
            t_end = clock_ns()
            if (code in STALE_CONNECTION and not retried and not lines
                    and getinfo(NUM_CONNECTS) == 0):
                retried = True          # a reused connection the server had closed
                parts.clear()
                continue
            break
        return self._result(t0, t_end, code, message)

    # The same exchange in two calls (the overlapped closed loop, harness.run.load.blocking_loop):
    # send_sync adds the handle to a CurlMulti and drives it once, which writes the
    # request on a kept connection; receive_sync drives it until the transfer ended.
    # Between the two the caller works while the server does. From the first
    # send_sync on, the handle's connection lives in the multi's connection cache, so
    # fetch_sync goes through the multi too.

    def send_sync(self, method: bytes, path: bytes, headers: Headers, body: bytes) -> _Sent:
        if self._multi is None:
            self._multi = pycurl.CurlMulti()
        self._prepare(method, path, headers, body)
        sent = _Sent()
        self._start(sent)
        return sent

    def receive_sync(self, sent: _Sent) -> tuple[HttpResponse, bytes, int, dict[str, int]]:
        multi, lines, getinfo = self._multi, self.lines, self._getinfo
        while True:
            # No perform before the first wait: the one that sent the request (or
            # response_waiting's) handed libcurl everything there was; libcurl's timeout
            # is 0 when it has work left without a socket event.
            while not self._ended:
                wait = multi.timeout()
                if wait:
                    multi.select(_SELECT_S if wait < 0 else min(_SELECT_S, wait / 1000))
                self._drive()
            t_end = self._t_ended
            code, message = self._finish()
            if (code in STALE_CONNECTION and not sent.retried and not lines
                    and getinfo(NUM_CONNECTS) == 0):
                sent.retried = True     # a reused connection the server had closed
                self.parts.clear()
                self._start(sent)
                continue
            return self._result(sent.t0, t_end, code, message)

    def response_waiting(self) -> bool:
        """Whether the response of the transfer in flight has begun to arrive: what is
        there is handed to libcurl (no wait), and a response header line or body byte
        counts (an HTTP/2 WINDOW_UPDATE or PING does not)."""
        if self._multi is None:
            return False
        if not self._ended and self._multi.select(0) > 0:
            self._drive()
        return bool(self.lines or self.parts)

    def _start(self, sent: _Sent) -> None:
        sent.t0 = clock_ns()
        self._multi.add_handle(self.curl)
        self._ended = False
        self._drive()

    def _drive(self) -> bool:
        """Let libcurl do what it can without waiting; whether the transfer ended (then
        stamped: `_t_ended`, right after the perform in which it did)."""
        perform = self._multi.perform
        while True:
            ret, running = perform()
            if ret != _CALL_MULTI_PERFORM:
                if running == 0:
                    self._t_ended = clock_ns()
                    self._ended = True
                    return True
                return False

    def _finish(self) -> tuple[int | None, str]:
        """Take the ended transfer off the multi: (curl error code or None, message)."""
        multi = self._multi
        failed = multi.info_read()[2]
        multi.remove_handle(self.curl)
        if failed:
            _, code, message = failed[0]
            return code, message
        return None, ""

    def _result(self, t0: int, t_end: int, code: int | None, message: str
                ) -> tuple[HttpResponse, bytes, int, dict[str, int]]:
        """The ended transfer's response, or the error it ended with."""
        lines, parts, getinfo = self.lines, self.parts, self._getinfo
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
        curl, self.curl = self.curl, None
        if curl is None:
            return
        for sock in self._socks.values():
            if sock.alive():
                sock.read()             # last counts before libcurl closes them
        multi, self._multi = self._multi, None
        if multi is not None:
            try:
                multi.remove_handle(curl)   # a transfer cut off mid-way
            except pycurl.error:
                pass
            multi.close()               # closes the connections in its cache
        curl.close()
        for sock in self._socks.values():
            sock.release()
            METER.closing(sock)         # type: ignore[arg-type]
        self._socks.clear()
