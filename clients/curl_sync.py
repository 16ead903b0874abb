"""libcurl's easy interface, blocking: the curl engine's closed-loop path for one user.

clients.curl drives a CurlMulti from the asyncio loop: per request a socket_action per
readiness event, Python socket and timer callbacks, futures and a task step, ~100,000
instructions of Python around libcurl's own work (benchmarks/README.md). When a worker
has exactly one user on one keep-alive connection (harness.loadgen's "blocking" client
path), none of that is needed: here one easy handle runs `perform()`, which loops
inside libcurl (poll, send, recv; pycurl releases the GIL around it) and returns when
the transfer ended. The connection stays in the handle's cache between requests.

Same contract as `CurlTransport.fetch`, blocking: (HttpResponse, body, t_received,
curl_phases). Same options (HTTP version, h2c prior knowledge, TLS verification and
version, SNI via CONNECT_TO, no session resumption, no User-Agent / Expect headers),
same protocol check (the negotiated version, FallbackError otherwise), same error
classes (clients.curl's code sets), same header and body collection (the handle's own
`list.append` methods as callbacks: C calls), same wire accounting (CURLOPT_SOCKOPT-
FUNCTION -> clients.wire.METER), same stale-connection retry.

Stamps: t_start is the caller's, taken just before `perform()`; t_received is the
clock_ns() right after it returned (libcurl has read the whole response: the same
"after libcurl read it" point the multi path stamps). There is no Python callback per
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

from .base import ClientError, ConnectError, ConnectionLost, FallbackError, ProtocolViolation, \
    Target, clock_ns
from .curl import (_CONNECT_ERRORS, _E_HTTP2, _INFO_VERSION, _NO_HEADERS, _PHASE_INFOS,
                   _PHASE_NAMES, _PROTOCOL_ERRORS, _STALE_CONNECTION, _TLS_VERSIONS,
                   _VERSION_NAMES, RECEIVE_BUFFER, _CurlSocket, _final_block, _url_host,
                   track_socket)
from .http1_sync import RequestTimeout
from .http_api import Headers, HttpResponse
from .wire import METER

_E_TIMEOUT = 28
_NUM_CONNECTS = pycurl.NUM_CONNECTS
_INFO_HTTP_VERSION = pycurl.INFO_HTTP_VERSION
_STARTTRANSFER = pycurl.STARTTRANSFER_TIME_T


class _Outcome:
    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: ClientError | None = None


class CurlEasyTransport:
    """One libcurl easy handle (one connection), one request at a time, blocking."""

    path_name = "libcurl easy"

    def __init__(self, target: Target, *, version: str, timeout_s: float = 30.0) -> None:
        if version not in _INFO_VERSION:
            raise ValueError(f"HTTP version must be one of {sorted(_INFO_VERSION)}")
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
        self._want = _INFO_VERSION[version]
        name, host = _url_host(target.server_name), _url_host(target.host)
        self._prefix = f"{'https' if tls else 'http'}://{name}:{target.port}".encode()
        self._track_sockets = version != "3"
        self._socks: dict[int, _CurlSocket] = {}
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
                c.setopt(pycurl.SSLVERSION, _TLS_VERSIONS[target.tls_version])
        c.setopt(pycurl.SOCKOPTFUNCTION, self._on_sockopt)
        c.setopt(pycurl.HEADERFUNCTION, self.lines.append)
        c.setopt(pycurl.WRITEFUNCTION, self.parts.append)
        self._setopt, self._getinfo, self._perform = c.setopt, c.getinfo, c.perform
        self._path: bytes | None = None
        self._hdrs: Headers | None = None
        self._method: bytes | None = None

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
            setopt(pycurl.POSTFIELDS, body)     # makes it a POST
        elif method == b"GET" and not body:
            if self._method != b"GET":
                setopt(pycurl.CUSTOMREQUEST, None)
                setopt(pycurl.NOBODY, 0)
                setopt(pycurl.HTTPGET, 1)
                self._method = b"GET"
        else:
            setopt(pycurl.NOBODY, 1 if method == b"HEAD" else 0)
            if method != b"HEAD":
                setopt(pycurl.POSTFIELDS, body)
            setopt(pycurl.CUSTOMREQUEST, method.decode())
            self._method = None
        if headers is not self._hdrs:
            setopt(pycurl.HTTPHEADER, [k + b": " + v for k, v in headers] + _NO_HEADERS)
            self._hdrs = headers

    def fetch_sync(self, method: bytes, path: bytes, headers: Headers, body: bytes
                   ) -> tuple[HttpResponse, bytes, int, dict[str, int]]:
        """One whole exchange (the blocking twin of CurlTransport.fetch)."""
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
            if (code in _STALE_CONNECTION and not retried and not lines
                    and getinfo(_NUM_CONNECTS) == 0):
                retried = True          # a reused connection the server had closed
                parts.clear()
                continue
            break
        try:
            phases = dict(zip(_PHASE_NAMES, map(getinfo, _PHASE_INFOS)))
            outcome = _Outcome()
            start, end, status = _final_block(lines, outcome)
            if code is not None:
                raise outcome.error or self._error(code, message, end >= 0, phases)
            if end < 0:
                raise outcome.error or ProtocolViolation(
                    "transfer ended without a complete header block")
            got = getinfo(_INFO_HTTP_VERSION)
            if got != self._want:
                raise FallbackError(
                    f"asked for HTTP/{self.version}, server answered HTTP/"
                    f"{_VERSION_NAMES.get(got, got)} ({self._prefix.decode()})")
            new = getinfo(_NUM_CONNECTS) > 0
            connect_ns = None
            if new:
                connect_ns = 1000 * (phases["appconnect"] if self.tls else phases["connect"])
            t_first = min(t0 + 1000 * phases["starttransfer"], t_end)
            response = HttpResponse(status, None, t_first, new, connect_ns, None,
                                    lines[start + 1:end])
            raw = parts[0] if len(parts) == 1 else b"".join(parts)
            return response, raw, t_end, phases
        finally:
            lines.clear()
            parts.clear()

    def _error(self, code: int, message: str, headed: bool,
               phases: dict[str, int]) -> ClientError:
        where = f"{self._prefix.decode()} via {self.target.host}:{self.target.port}"
        text = f"HTTP/{self.version} {where}: curl error {code}: {message}"
        if code == _E_TIMEOUT:
            return RequestTimeout(f"no complete response within {self.timeout_s} s ({text})")
        if code in _PROTOCOL_ERRORS:
            return ProtocolViolation(text)
        if not headed:
            if (code in _CONNECT_ERRORS or message.startswith("Failed to connect")
                    or not phases.get("pretransfer")):
                return ConnectError(text)
            if self._http_version == pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE and (
                    code == _E_HTTP2 or "SETTINGS" in message):
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
        curl.close()
        for sock in self._socks.values():
            sock.release()
            METER.closing(sock)         # type: ignore[arg-type]
        self._socks.clear()
