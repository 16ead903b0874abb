"""HTTP/1.1, HTTP/2 and HTTP/3 through libcurl (pycurl), driven by the running asyncio loop.

A C engine next to the pure-Python transports (clients.http1, http2, http3), behind the
same `HttpTransport` contract, so a cell can be measured with the protocol work done in
C (ANCHORS.md: a plain CurlMulti loop reached 1.02x h2load and 0.88x wrk).

Event-loop integration is libcurl's multi-socket API, with no threads and no polling:
CURLMOPT_SOCKETFUNCTION maps onto loop.add_reader / add_writer / remove_*,
CURLMOPT_TIMERFUNCTION onto loop.call_later (call_soon for "now"), and every readiness
event or timer runs one `socket_action`; completed transfers are collected with
`info_read` only when the running count says one finished. Works under uvloop and the
stdlib selector loop. A request added while nothing else is in flight runs libcurl at
once (lowest latency at concurrency 1); otherwise libcurl's "due now" timer sends every
request added in one loop iteration in a single socket_action.

libcurl stops watching a connection's socket whenever it goes idle, i.e. after every
request; with reuse the loop's reader is kept ("lingering") so the next request on it
costs no epoll_ctl pair. libcurl does not say when it closes a socket it is not
watching (an aged or dead idle connection), and a loop registration must never outlive
its fd (the next file with that number would inherit it; uvloop aborts the process).
So lingering fds are dropped when they turn readable (peer closed or sent), checked
with one select() after every socket_action that started or ended a transfer (the only
times libcurl closes idle connections), and cleared when libcurl opens a new socket
with the same number (CURLOPT_SOCKOPTFUNCTION).

Per request: a pooled easy handle (creating one costs far more than resetting a few
options), one exchange object, and the header lines the response carries. The unary
path, `fetch()`, gives libcurl the handle's own `list.append` methods as header and
write callbacks (C calls: no Python frame per header line or body piece) and wakes its
caller once, when the transfer ended; `request()` streams through Python callbacks.

Receive times: one clock_ns() per header-block start and per body piece, in the
callback libcurl hands it over in (the completion reuses the last piece's stamp when it
came in the same call). Not the time the loop reported the event: one socket_action
can both send a request and read its response (on loopback, sendto() often returns only after the server, woken on
the same core, has answered), and a stamp taken before the call would then precede the
request itself (seen: 20 us "latencies" against 120 us of server time). The stamp is
therefore a few microseconds after the bytes arrived (libcurl's recv, TLS decryption,
framing), where the Python transports stamp right after the loop's recv. fetch() has no
Python callback to stamp in: its first-byte and end times are one clock_ns() taken right
after the socket_action in which its first header line (its end) arrived, the same
"after libcurl read it" point, later by the rest of that call (for a small response at
concurrency 1, headers, body and end come in one call and share the stamp).

Timings: `exchange.curl_phases` holds libcurl's own phase times in microseconds, each
measured by libcurl from the start of the transfer (when the handle was added, curl's
clock): namelookup, connect, appconnect (TLS / QUIC handshake done; 0 on cleartext),
pretransfer (request about to be sent), starttransfer (first response byte read) and
total (transfer done). On a reused connection the first three are 0 (or tiny). The
harness's own t_start is taken before `request()` (so it includes building the request
in Python, a few microseconds earlier than curl's zero), and t_first_byte is the loop's
stamp of the first header line, taken in the callback, just after libcurl read it
(curl's starttransfer is taken when it read the first byte, slightly earlier). So, per
request, (t_first_byte - t_start) ~ starttransfer + a few microseconds of Python request
set-up, and (t_received - t_start) ~ total likewise.

Wire accounting: libcurl owns its sockets. CURLOPT_SOCKOPTFUNCTION shows each new TCP
socket; it is tracked in clients.wire.METER through a small adapter that reads TCP_INFO
by file descriptor (checking the fd still names the same socket) and keeps the last
reading, which stands for the socket once libcurl has closed it. Readings: at every
METER snapshot, when a reuse=False connection ends (POLL_REMOVE comes just before
libcurl closes it), when an idle connection turns readable (peer closing), and at
close(). What can escape: the final FIN/ACK of a connection, and the bytes since the
last snapshot of an idle connection libcurl closed on its own (older than
MAXAGE_CONN, 118 s idle). CURLOPT_CLOSESOCKETFUNCTION would be the
natural hook but is unsafe with pycurl: libcurl calls it through the easy handle that
opened the connection, and when that handle is not attached to the multi at that moment
(an idle connection found dead, the multi closing), pycurl cannot take the GIL, warns
"closesocket_callback failed to acquire thread" and never closes the fd.
HTTP/3 runs over UDP inside ngtcp2: its datagrams are not counted at socket level here
(namespace interface counters cover it).

TLS: verified against `target.ca` with SNI `target.server_name`; the URL names
server_name and CURLOPT_CONNECT_TO sends the socket to target.host. TLS session
resumption is off, so each new connection does a full handshake, as the Python
transports do. HTTP/2 over TLS offers ALPN h2 and http/1.1 (libcurl cannot offer h2
alone): a server that picks http/1.1 is caught at the response headers (FallbackError),
after it has served the request. h2c uses prior knowledge.

On the wire, libcurl's HTTP/2 differs from the Python transport and from h2load: it
opens each stream with a 64 KiB window and raises it with WINDOW_UPDATE frames, two per
request, which costs a Python server (hypercorn) measurably more per request. A reused
connection that the server closed while idle (libcurl was not watching it) fails the
next request before any response byte; that request is retried once on a new
connection, as libcurl does itself for HTTP/1.1 and as the Python transports avoid by
seeing the close.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import os
import select
import socket
from typing import ClassVar

import pycurl

from .base import (ClientError, ConnectError, ConnectionLost, FallbackError, ProtocolViolation,
                   Target, clock_ns)
from .http_api import Headers, HttpExchange, HttpResponse, HttpTransport, QueuedExchange
from .wire import METER

# CURLINFO_HTTP_VERSION values and the CURLOPT_HTTP_VERSION asked for each version.
_INFO_VERSION = {"1.1": pycurl.CURL_HTTP_VERSION_1_1, "2": pycurl.CURL_HTTP_VERSION_2_0,
                 "3": pycurl.CURL_HTTP_VERSION_3}
_VERSION_NAMES = {pycurl.CURL_HTTP_VERSION_1_0: "1.0", pycurl.CURL_HTTP_VERSION_1_1: "1.1",
                  pycurl.CURL_HTTP_VERSION_2_0: "2", pycurl.CURL_HTTP_VERSION_3: "3"}

# libcurl error codes (some are missing from pycurl's constants).
_CONNECT_ERRORS = frozenset({
    5, 6, 7,            # could not resolve proxy / host, could not connect
    28,                 # timed out (only the connect timeout is set)
    35, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98,   # TLS set-up
    96,                 # QUIC connect error
})
_PROTOCOL_ERRORS = frozenset({1, 8, 100})     # unsupported protocol, weird reply, too large
# A reused connection the server had already closed (its close or GOAWAY arrived while
# the connection sat idle, unwatched): HTTP/2 framing error, nothing received, send or
# receive failure. Retried once on a new connection, as libcurl itself does for HTTP/1.1
# and as the Python transports do by noticing the close while idle.
_STALE_CONNECTION = frozenset({16, 52, 55, 56, 92, 95})
_E_HTTP2 = 16                                  # HTTP/2 framing layer error
# Headers libcurl would add that the Python transports do not send: no User-Agent
# (pycurl sets one), no "Expect: 100-continue" on large bodies.
_NO_HEADERS = [b"User-Agent:", b"Expect:"]

_PHASES = (("namelookup", pycurl.NAMELOOKUP_TIME_T), ("connect", pycurl.CONNECT_TIME_T),
           ("appconnect", pycurl.APPCONNECT_TIME_T), ("pretransfer", pycurl.PRETRANSFER_TIME_T),
           ("starttransfer", pycurl.STARTTRANSFER_TIME_T), ("total", pycurl.TOTAL_TIME_T))

_PHASE_NAMES = tuple(name for name, _ in _PHASES)
# Exactly one TLS version, as the scenario's tls_version asks (QUIC is always 1.3).
_TLS_VERSIONS = {"1.2": pycurl.SSLVERSION_TLSv1_2 | pycurl.SSLVERSION_MAX_TLSv1_2,
                 "1.3": pycurl.SSLVERSION_TLSv1_3 | pycurl.SSLVERSION_MAX_TLSv1_3}
_PHASE_INFOS = tuple(info for _, info in _PHASES)

_POLL_REMOVE = pycurl.POLL_REMOVE
_CSELECT_IN = pycurl.CSELECT_IN
_CSELECT_OUT = pycurl.CSELECT_OUT
_SOCKET_TIMEOUT = pycurl.SOCKET_TIMEOUT
_INFO_HTTP_VERSION = pycurl.INFO_HTTP_VERSION
_NUM_CONNECTS = pycurl.NUM_CONNECTS
_LOCAL_PORT = pycurl.LOCAL_PORT
_POSTFIELDS = pycurl.POSTFIELDS

RECEIVE_BUFFER = 512 * 1024     # fewer, larger write callbacks for big bodies (HTTP/1.1)


def _final_block(lines: list[bytes], ex: "_CurlExchange") -> tuple[int, int, int]:
    """(status line index, blank line index, status) of the final header block among
    the header lines libcurl handed over: 1xx blocks skipped, trailers after it ignored.
    The blank line's index is -1 if there is no complete final block (ex.error says why
    if a status line was bad)."""
    start = 0
    try:
        end = lines.index(b"\r\n")            # the usual case: one block
    except ValueError:
        end = -1
    while True:
        if end < 0:                             # bare-LF line ends, or no blank line
            end = next((i for i in range(start, len(lines))
                        if lines[i] == b"\r\n" or lines[i] == b"\n"), -1)
            if end < 0:
                return start, -1, 0
        try:
            status = int(lines[start].split(None, 2)[1])
        except (IndexError, ValueError):
            ex.error = ProtocolViolation(f"bad status line {lines[start][:80]!r}")
            return start, -1, 0
        if status >= 200:
            return start, end, status
        start, end = end + 1, -1                # 1xx: the real block follows


def track_socket(socks: dict[int, "_CurlSocket"], fd: int) -> None:
    """Meter a socket libcurl just opened (its SOCKOPTFUNCTION), after taking the last
    reading of the one that had this fd number before, if libcurl closed it."""
    old = socks.pop(fd, None)
    if old is not None:
        old.release()
        METER.closing(old)              # type: ignore[arg-type]   # its last reading
    try:
        sock = _CurlSocket(fd)
    except OSError:
        return
    socks[fd] = sock
    METER.track(sock)                   # type: ignore[arg-type]


class _CurlSocket:
    """A libcurl-owned TCP socket as clients.wire.METER sees it (fileno + getsockopt).

    Holds a non-owning socket object (detached, never closed: libcurl closes the fd).
    If the fd no longer names the socket it was made for (libcurl closed it, maybe
    reused the number), getsockopt returns the last reading instead.
    """

    __slots__ = ("fd", "ino", "sock", "last")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.ino = os.fstat(fd).st_ino
        self.sock: socket.socket | None = socket.socket(fileno=fd)
        self.last: bytes | None = None

    def fileno(self) -> int:
        return self.fd

    def read(self) -> None:
        """Take a reading now (only when the fd is known to be this socket)."""
        if self.sock is not None:
            try:
                self.last = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
            except OSError:
                pass

    def alive(self) -> bool:
        try:
            return self.sock is not None and os.fstat(self.fd).st_ino == self.ino
        except OSError:
            return False

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        if (level, option) != (socket.IPPROTO_TCP, socket.TCP_INFO):
            raise OSError("only TCP_INFO is available on a libcurl socket")
        if self.alive():
            self.read()
        if self.last is None:
            raise OSError("socket closed before any reading")
        return self.last

    def release(self) -> None:
        """Forget the fd (never close it: it is libcurl's, or already someone else's)."""
        if self.sock is not None:
            self.sock.detach()
            self.sock = None

    def __del__(self) -> None:
        self.release()


class _Easy:
    """A pooled easy handle; its callbacks forward to the exchange it is serving.

    A plain object around the pycurl.Curl rather than a subclass of it: attribute
    access on pycurl objects goes through pycurl's own getattro (a string-compared
    method table first), which showed up in profiles at a dozen lookups per request.
    """

    __slots__ = ("curl", "setopt", "getinfo", "owner", "ex", "path", "method", "hdrs",
                 "seq", "t", "whole", "lines", "parts")

    def __init__(self, owner: "CurlTransport") -> None:
        self.curl = curl = pycurl.Curl()
        self.setopt = curl.setopt
        self.getinfo = curl.getinfo
        self.owner = owner
        self.ex: _CurlExchange | None = None
        self.path: bytes | None = None
        self.method: bytes | None = None
        self.hdrs: Headers | None = None
        self.seq = -1           # the socket_action whose receive time `t` is
        self.t = 0
        # fetch() transfers hand libcurl these lists' own append methods as header and
        # write callbacks: C calls, no Python frame per header line or body piece.
        self.whole: bool | None = None          # which callbacks are set
        self.lines: list[bytes] = []
        self.parts: list[bytes] = []

    def set_mode(self, whole: bool) -> None:
        if whole:
            self.setopt(pycurl.HEADERFUNCTION, self.lines.append)
            self.setopt(pycurl.WRITEFUNCTION, self.parts.append)
        else:
            self.setopt(pycurl.HEADERFUNCTION, self.on_header)
            self.setopt(pycurl.WRITEFUNCTION, self.on_body)
        self.whole = whole

    def on_header(self, line: bytes) -> int | None:
        ex = self.ex
        if ex is None or ex.header_end:                 # abandoned, or trailers
            return None
        lines = ex.lines
        if not lines:                                   # a status line
            if not ex.t_first:
                self.seq, self.t = self.owner.seq, clock_ns()
                ex.t_first = self.t
            lines.append(line)
        elif line == b"\r\n" or line == b"\n":         # end of a header block
            try:
                status = int(lines[0].split(None, 2)[1])
            except (IndexError, ValueError):
                ex.error = ProtocolViolation(f"bad status line {lines[0][:80]!r}")
                return 0                                # refuse: libcurl aborts
            if status < 200:                            # 1xx: the real one follows
                lines.clear()
                return None
            ex.status = status
            ex.header_end = True
            self.owner.headed.append(self)              # published after socket_action
        else:
            lines.append(line)
        return None

    def on_body(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:
            return 0        # type: ignore[return-value]  # abandoned: abort the transfer
        # Stamped per piece: one socket_action may read again after the server wrote
        # more (libcurl's HTTP/2 reader loops), so a stamp reused from the action's first
        # piece could precede the server's own emit time of a later token.
        self.seq, self.t = self.owner.seq, clock_ns()
        ex.chunks.append((data, self.t))
        waiter = ex.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return None


class _CurlExchange(QueuedExchange):
    """One transfer. request(): `ready` resolves when the response headers arrived and
    the body streams through `chunks`; fetch() (`whole`): `ready` resolves once, when
    the transfer ended, with the body in `raw`."""

    # Defaults as class attributes: a request's exchange sets only what it changes.
    waiter: asyncio.Future | None = None
    status = 0
    t_first = 0
    t_end = 0                                   # when the end of the transfer arrived
    header_end = False
    retried = False
    response: HttpResponse | None = None        # type: ignore[assignment]
    complete = False
    error: ClientError | None = None
    curl_phases: dict[str, int] | None = None
    raw = b""

    def __init__(self, transport: "CurlTransport", easy: _Easy,
                 loop: asyncio.AbstractEventLoop, whole: bool) -> None:
        self.transport = transport
        self.easy: _Easy | None = easy          # None once the transfer left the multi
        self.loop = loop
        self.ready: asyncio.Future = loop.create_future()
        self.whole = whole
        if whole:
            self.lines = easy.lines             # filled by libcurl through list.append
        else:
            self.chunks: collections.deque[tuple[bytes, int]] = collections.deque()
            self.lines: list[bytes] = []         # raw header lines, status line first

    def fail(self, exc: ClientError) -> None:
        if self.error is None:
            self.error = exc
        if not self.ready.done():
            self.ready.set_exception(self.error)
        if not self.whole:
            self._wake()

    def finish(self, t: int) -> None:
        self.t_end = t
        if self.whole:
            self.complete = True
            if not self.ready.done():
                self.ready.set_result(None)
        else:
            super().finish(t)

    async def aclose(self) -> None:
        easy = self.easy
        if easy is not None:                    # still transferring: abandon it
            self.easy = None
            self.transport.abandon(easy)


class CurlTransport(HttpTransport):
    """libcurl for one HTTP version ("1.1", "2", "3") to one target.

    reuse=True: one CurlMulti keeps connections; HTTP/2 and HTTP/3 multiplex every
    concurrent request on one connection (CURLPIPE_MULTIPLEX, PIPEWAIT, one connection
    per host); HTTP/1.1 keeps a pool of up to `max_connections` (None: unlimited;
    transfers beyond wait inside libcurl, and the wait counts in their latency).
    reuse=False: FRESH_CONNECT + FORBID_REUSE, a new connection per request.
    """

    version: ClassVar[str] = ""
    # Keep the loop's reader on sockets libcurl stops watching between requests (it
    # does that for every idle connection), saving an epoll_ctl pair per request.
    linger_idle: ClassVar[bool] = True

    def __init__(self, target: Target, *, reuse: bool, max_connections: int | None = None,
                 version: str | None = None) -> None:
        super().__init__(target, reuse=reuse, max_connections=max_connections)
        if version is not None:
            self.version = version
        if self.version not in _INFO_VERSION:
            raise ValueError(f"HTTP version must be one of {sorted(_INFO_VERSION)}, "
                             f"not {self.version!r}")
        tls = target.tls if target.tls is not None else self.version != "1.1"
        if self.version == "3" and not tls:
            raise ValueError("HTTP/3 runs over QUIC, which is always TLS: tls=False is invalid")
        self.tls = tls
        if self.version == "1.1":
            self._http_version = pycurl.CURL_HTTP_VERSION_1_1
        elif self.version == "2":
            self._http_version = (pycurl.CURL_HTTP_VERSION_2TLS if tls
                                  else pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)
        else:
            self._http_version = pycurl.CURL_HTTP_VERSION_3ONLY
        self._want = _INFO_VERSION[self.version]
        self._multiplex = self.version != "1.1"
        name, host = _url_host(target.server_name), _url_host(target.host)
        self._prefix = f"{'https' if tls else 'http'}://{name}:{target.port}".encode()
        self._connect_to = ([f"{name}:{target.port}:{host}:{target.port}"]
                            if target.server_name != target.host else None)
        self._track_sockets = self.version != "3"     # QUIC's UDP: namespace counters only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._multi: pycurl.CurlMulti | None = None
        self._pool: list[_Easy] = []
        self._handles: list[_Easy] = []
        self._easy_of: dict[pycurl.Curl, _Easy] = {}
        self._active: set[_Easy] = set()         # attached to the multi
        self._watch: dict[int, int] = {}         # fd -> mask registered with the loop
        # reuse=True: fds libcurl stopped watching (an idle connection, its eventfd) whose
        # loop reader is kept, so the next request on them costs no epoll_ctl pair.
        self._linger: set[int] = set()
        self._linger_ok = reuse and self.linger_idle
        self._ino: dict[int, int] = {}           # fd -> inode when first registered
        self._adding = False
        self._socks: dict[int, _CurlSocket] = {}
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_now = False
        self._added = 0
        self.headed: list[_Easy] = []            # header blocks completed in this action
        self.seq = 0                              # socket_action calls so far
        self._unstamped: list[_Easy] = []         # fetch() transfers with no header yet
        self.t_seq, self.t_action = -1, 0         # a time taken after socket_action `seq`

    # ------------------------------------------------------------------ setup

    def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        m = pycurl.CurlMulti()
        m.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        m.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        if self._multiplex:
            m.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
            if self.reuse:
                m.setopt(pycurl.M_MAX_HOST_CONNECTIONS, 1)
        else:
            m.setopt(pycurl.M_PIPELINING, pycurl.PIPE_NOTHING)
            if self.max_connections:
                m.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self.max_connections)
            # The idle-connection cache must hold every pooled connection (libcurl's
            # default shrinks with the number of attached handles).
            m.setopt(pycurl.M_MAXCONNECTS, self.max_connections or 1024)
        self._multi = m

    def _new_easy(self) -> _Easy:
        e = _Easy(self)
        e.setopt(pycurl.NOSIGNAL, 1)
        e.setopt(pycurl.HTTP_VERSION, self._http_version)
        e.setopt(pycurl.BUFFERSIZE, RECEIVE_BUFFER)
        if self._connect_to:
            e.setopt(pycurl.CONNECT_TO, self._connect_to)
        if self.tls:
            if self.target.ca is not None:
                e.setopt(pycurl.CAINFO, str(self.target.ca))
            e.setopt(pycurl.SSL_SESSIONID_CACHE, 0)
            if self.target.tls_version is not None and self._http_version != pycurl.CURL_HTTP_VERSION_3ONLY:
                e.setopt(pycurl.SSLVERSION, _TLS_VERSIONS[self.target.tls_version])
        if self._multiplex and self.reuse:
            e.setopt(pycurl.PIPEWAIT, 1)        # wait for the one connection, never open a 2nd
        if not self.reuse:
            e.setopt(pycurl.FRESH_CONNECT, 1)
            e.setopt(pycurl.FORBID_REUSE, 1)
        e.setopt(pycurl.SOCKOPTFUNCTION, self._on_sockopt)
        self._handles.append(e)
        self._easy_of[e.curl] = e
        return e

    # ------------------------------------------------------------------ requests

    async def request(self, method: bytes, path: bytes, headers: Headers,
                      body: bytes) -> HttpExchange:
        ex = self._start(method, path, headers, body, False)
        try:
            await ex.ready
        except BaseException:
            await ex.aclose()
            raise
        return ex

    async def fetch(self, method: bytes, path: bytes, headers: Headers,
                    body: bytes) -> tuple[HttpResponse, bytes, int, dict[str, int] | None]:
        ex = self._start(method, path, headers, body, True)
        try:
            await ex.ready
        except BaseException:
            await ex.aclose()
            raise
        return ex.response, ex.raw, ex.t_end, ex.curl_phases

    def _start(self, method: bytes, path: bytes, headers: Headers, body: bytes,
               whole: bool) -> _CurlExchange:
        if self._multi is None:
            self._open()
        easy = self._pool.pop() if self._pool else self._new_easy()
        if easy.whole is not whole:
            easy.set_mode(whole)
        if whole:                       # easy.lines and .parts are empty (_complete, abandon)
            self._unstamped.append(easy)
        ex = _CurlExchange(self, easy, self._loop, whole)     # type: ignore[arg-type]
        easy.ex = ex
        if path != easy.path:
            easy.setopt(pycurl.URL, self._prefix + path)
            easy.path = path
        if method == b"POST":
            if easy.method != b"POST":
                self._set_method(easy, method)
            easy.setopt(_POSTFIELDS, body)
        elif method == b"GET" and not body:
            if easy.method != b"GET":
                self._set_method(easy, method)
        else:
            self._set_method(easy, method, body)
        if headers is not easy.hdrs:
            easy.setopt(pycurl.HTTPHEADER, [k + b": " + v for k, v in headers] + _NO_HEADERS)
            easy.hdrs = headers
        # Alone in flight: run libcurl right away (lowest latency). Otherwise leave it to
        # libcurl's "due now" timer (call_soon), so that every request added in this
        # loop iteration goes out in one socket_action.
        sync = self._adding = not self._added
        try:
            self._multi.add_handle(easy.curl)    # type: ignore[union-attr]
        except pycurl.error as exc:
            self._adding = False
            easy.ex = None
            if whole:
                self._unstamped.remove(easy)
            self._pool.append(easy)
            raise ConnectError(f"libcurl refused the transfer: {exc}") from None
        self._added += 1
        self._active.add(easy)
        if sync:
            self._kick()
        return ex

    @staticmethod
    def _set_method(easy: _Easy, method: bytes, body: bytes = b"") -> None:
        """GET and POST are remembered per handle; anything else is set afresh each time."""
        if easy.method is None:                 # undo a previous custom method
            easy.setopt(pycurl.NOBODY, 0)
        if method == b"GET":
            easy.setopt(pycurl.CUSTOMREQUEST, None)
            easy.setopt(pycurl.HTTPGET, 1)
        elif method == b"POST":                 # POSTFIELDS (set per request) makes it a POST
            easy.setopt(pycurl.CUSTOMREQUEST, None)
        elif method == b"HEAD":
            easy.setopt(pycurl.CUSTOMREQUEST, None)
            easy.setopt(pycurl.NOBODY, 1)
        else:                                   # PUT, DELETE, GET with a body, ...
            easy.setopt(pycurl.POSTFIELDS, body)
            easy.setopt(pycurl.CUSTOMREQUEST, method.decode())
        easy.method = method if method in (b"GET", b"POST") else None

    def _publish(self, easy: _Easy) -> bool:
        """The final header block arrived: check the protocol, hand the response over.

        Runs after socket_action returned (pycurl refuses getinfo inside callbacks).
        False if the transfer was stopped (another HTTP version was negotiated).
        """
        ex = easy.ex
        if ex is None:
            return True
        if not self._check_version(easy, ex):
            ex.easy = None
            self.abandon(easy)
            return False
        connect_ns = None
        new = easy.getinfo(_NUM_CONNECTS) > 0
        if new:
            connect_ns = 1000 * easy.getinfo(pycurl.APPCONNECT_TIME_T if self.tls
                                             else pycurl.CONNECT_TIME_T)
        ex.response = HttpResponse(ex.status, None, ex.t_first, new, connect_ns,
                                   easy.getinfo(_LOCAL_PORT), ex.lines[1:])
        ex.ready.set_result(None)
        return True

    def _check_version(self, easy: _Easy, ex: _CurlExchange) -> bool:
        got = easy.getinfo(_INFO_HTTP_VERSION)
        if got == self._want:
            return True
        ex.fail(FallbackError(
            f"asked for HTTP/{self.version}, server answered HTTP/"
            f"{_VERSION_NAMES.get(got, got)} ({self._prefix.decode()})"))
        return False

    def abandon(self, easy: _Easy) -> None:
        """The caller left before the transfer completed: stop it, keep the handle."""
        easy.ex = None
        if easy.whole:
            if easy in self._unstamped:
                self._unstamped.remove(easy)
            easy.lines.clear()
            easy.parts.clear()
        if easy in self._active:
            self._active.discard(easy)
            self._added -= 1
            try:
                self._multi.remove_handle(easy.curl)  # type: ignore[union-attr]
            except pycurl.error:
                pass
            if self._linger:            # removing it may have closed its connection
                self._check_linger()
        self._pool.append(easy)

    # ------------------------------------------------------------------ the loop side

    def _kick(self) -> None:
        """Run libcurl now for the transfer just added (its timer said 'due now')."""
        self._adding = False
        if self._timer is not None and self._timer_now:
            self._timer.cancel()
            self._timer = None
        self._action(_SOCKET_TIMEOUT, 0)

    def _action(self, fd: int, event: int) -> None:
        multi = self._multi
        if multi is None:               # closed: a late event
            return
        if self._linger and fd in self._linger:
            self._unlinger(fd)          # libcurl is not watching it: the peer closed or
            return                      # sent on an idle connection; libcurl will see
        self.seq += 1
        try:
            running = multi.socket_action(fd, event)[1]
        except pycurl.error as exc:
            self._fail_all(ConnectionLost(f"libcurl multi error: {exc}"))
            return
        stopped = False
        if self.headed:
            headed, self.headed = self.headed, []
            for easy in headed:
                stopped |= not self._publish(easy)
        done = stopped or running < self._added
        if self._unstamped:
            # fetch() transfers whose first header line came in this action: one stamp,
            # taken after libcurl read (and handed over) everything it got in it.
            unstamped = self._unstamped
            waiting = [easy for easy in unstamped if not easy.lines]
            if len(waiting) != len(unstamped):
                self.t_seq, self.t_action = self.seq, clock_ns()
                for easy in unstamped:
                    if easy.lines:
                        easy.ex.t_first = self.t_action    # type: ignore[union-attr]
                self._unstamped = waiting
        if done:
            self._drain()
        # libcurl closes idle connections only when a transfer starts (timer actions)
        # or ends (pool limits, errors): only then can a lingering fd have gone away.
        if self._linger and (done or fd == _SOCKET_TIMEOUT):
            self._check_linger()

    def _drain(self) -> None:
        multi = self._multi
        _, ok, failed = multi.info_read()          # type: ignore[union-attr]
        easy_of = self._easy_of
        for curl in ok:
            self._done(easy_of[curl], None, "")
        for curl, code, message in failed:
            self._done(easy_of[curl], code, message)

    def _done(self, easy: _Easy, code: int | None, message: str) -> None:
        # The end's receive time: that of the data it came with, or now if it came alone.
        if easy.whole:
            if self.t_seq != self.seq:
                self.t_seq, self.t_action = self.seq, clock_ns()
            t = self.t_action
        else:
            t = easy.t if easy.seq == self.seq else clock_ns()
        self._multi.remove_handle(easy.curl)     # type: ignore[union-attr]
        self._active.discard(easy)
        self._added -= 1
        ex = easy.ex
        if (code in _STALE_CONNECTION and ex is not None and not ex.retried and not ex.t_first
                and easy.getinfo(_NUM_CONNECTS) == 0):
            ex.retried = True                    # stale reused connection: once more
            try:
                self._multi.add_handle(easy.curl)  # type: ignore[union-attr]
            except pycurl.error:
                pass
            else:
                self._added += 1
                self._active.add(easy)
                return                           # libcurl's timer callback restarts it
        easy.ex = None
        if ex is not None:
            ex.easy = None
            ex.curl_phases = dict(zip(_PHASE_NAMES, map(easy.getinfo, _PHASE_INFOS)))
            if ex.whole:
                self._complete(easy, ex, code)
            if code is None and ex.response is not None:
                ex.finish(t)
            elif code is None:
                ex.fail(ex.error or ProtocolViolation(
                    "transfer ended without a complete header block"))
            else:
                ex.fail(ex.error or self._error(code, message, ex))
        elif easy.whole:
            easy.lines.clear()
            easy.parts.clear()
        self._pool.append(easy)

    def _complete(self, easy: _Easy, ex: _CurlExchange, code: int | None) -> None:
        """A fetch() transfer ended: its header lines and body, as libcurl appended them."""
        if ex.t_first == 0 and easy in self._unstamped:
            self._unstamped.remove(easy)         # ended before any header line
        lines, parts = easy.lines, easy.parts
        start, end, status = _final_block(lines, ex)
        if end >= 0 and self._check_version(easy, ex):
            new = easy.getinfo(_NUM_CONNECTS) > 0
            connect_ns = None
            if new:
                connect_ns = 1000 * easy.getinfo(pycurl.APPCONNECT_TIME_T if self.tls
                                                 else pycurl.CONNECT_TIME_T)
            ex.status = status
            ex.response = HttpResponse(status, None, ex.t_first, new, connect_ns, None,
                                       lines[start + 1:end])
            ex.raw = parts[0] if len(parts) == 1 else b"".join(parts)
        lines.clear()
        parts.clear()

    def _error(self, code: int, message: str, ex: _CurlExchange) -> ClientError:
        where = f"{self._prefix.decode()} via {self.target.host}:{self.target.port}"
        text = f"HTTP/{self.version} {where}: curl error {code}: {message}"
        if code in _PROTOCOL_ERRORS:
            return ProtocolViolation(text)
        if ex.response is None:
            # The connection (TCP, TLS, QUIC) could not be set up: a connect-phase code,
            # libcurl's own "Failed to connect to ..." (QUIC to a closed port is code 55),
            # or the request never got as far as being sent.
            if (code in _CONNECT_ERRORS or message.startswith("Failed to connect")
                    or not (ex.curl_phases or {}).get("pretransfer")):
                return ConnectError(text)
            if self._http_version == pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE and (
                    code == _E_HTTP2 or "SETTINGS" in message):   # an HTTP/1.x answer
                return FallbackError(f"asked for h2c (prior knowledge), the server did not "
                                     f"answer in HTTP/2: {text}")
        return ConnectionLost(text)

    def _fail_all(self, exc: ClientError) -> None:
        for easy in list(self._active):
            ex = easy.ex
            self.abandon(easy)
            if ex is not None:
                ex.easy = None
                ex.fail(exc)

    def _on_socket(self, what: int, fd: int, multi: object, socketp: object) -> None:
        if self._multi is None:         # closing: libcurl shutting connections down
            return
        old = self._watch.get(fd, 0)
        if what == _POLL_REMOVE or what == 0:          # POLL_REMOVE or POLL_NONE
            if not old:
                return
            if self._linger_ok and old & 1:
                # Keep the reader: a reused connection wants it back on the next request.
                # (_check_linger drops it if libcurl closes the socket meanwhile.)
                if old & 2:
                    self._loop.remove_writer(fd)        # type: ignore[union-attr]
                    self._watch[fd] = 1
                self._linger.add(fd)
                return
            sock = self._socks.get(fd)
            if sock is not None:
                sock.read()                 # reuse=False: libcurl closes it next
            new = 0
        else:
            new = what
            if self._linger:
                self._linger.discard(fd)
        if old == new:
            return
        loop = self._loop
        if not old:
            self._ino[fd] = os.fstat(fd).st_ino
        if (old ^ new) & 1:
            if new & 1:
                loop.add_reader(fd, self._action, fd, _CSELECT_IN)     # type: ignore[union-attr]
            else:
                loop.remove_reader(fd)                                   # type: ignore[union-attr]
        if (old ^ new) & 2:
            if new & 2:
                loop.add_writer(fd, self._action, fd, _CSELECT_OUT)    # type: ignore[union-attr]
            else:
                loop.remove_writer(fd)                                   # type: ignore[union-attr]
        if new:
            self._watch[fd] = new
        else:
            del self._watch[fd]
            self._ino.pop(fd, None)

    def _check_linger(self) -> None:
        """Drop lingering registrations whose socket libcurl has closed (it does not say
        so for sockets it is not watching). A loop registration must never outlive its
        fd: a new file with that number would inherit it (uvloop aborts on that). A
        number libcurl reuses in the same call is caught by _on_sockopt; a closed one
        makes select() fail, and then each fd is checked."""
        linger = list(self._linger)
        try:
            readable = select.select(linger, (), (), 0)[0]
        except (OSError, ValueError):           # EBADF (closed), or fd >= FD_SETSIZE
            ino = self._ino
            for fd in linger:
                try:
                    same = os.fstat(fd).st_ino == ino.get(fd)
                except OSError:
                    same = False
                if not same:
                    self._forget(fd)
            return
        for fd in readable:                     # the peer closed or sent while idle
            self._unlinger(fd)

    def _unlinger(self, fd: int) -> None:
        """Drop the loop's registration of an fd libcurl no longer watches (still open)."""
        sock = self._socks.get(fd)
        if sock is not None:
            sock.read()                     # still open: take its counts while we can
        self._forget(fd)

    def _forget(self, fd: int) -> None:
        self._linger.discard(fd)
        self._ino.pop(fd, None)
        mask = self._watch.pop(fd, 0)
        if mask & 1:
            self._loop.remove_reader(fd)    # type: ignore[union-attr]
        if mask & 2:
            self._loop.remove_writer(fd)    # type: ignore[union-attr]

    def _on_timer(self, timeout_ms: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if timeout_ms < 0 or self._multi is None:
            return
        self._timer_now = timeout_ms == 0
        if timeout_ms == 0:
            if self._adding:            # add_handle: _kick runs libcurl right after
                return
            # never re-enter libcurl from inside its own callback
            self._timer = self._loop.call_soon(self._on_timeout)
        else:
            self._timer = self._loop.call_later(timeout_ms / 1000, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        self._action(_SOCKET_TIMEOUT, 0)

    def _on_sockopt(self, fd: int, purpose: int) -> int:
        if fd in self._watch:           # a registration left from a closed socket
            self._forget(fd)
        if self._track_sockets:
            track_socket(self._socks, fd)
        return 0                        # CURL_SOCKOPT_OK

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        multi = self._multi
        if multi is None:
            return
        self._fail_all(ConnectionLost("transport closed"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sock in self._socks.values():
            if sock.alive():
                sock.read()             # last counts before libcurl closes them
        for fd, mask in list(self._watch.items()):
            if mask & 1:
                self._loop.remove_reader(fd)     # type: ignore[union-attr]
            if mask & 2:
                self._loop.remove_writer(fd)     # type: ignore[union-attr]
        self._watch.clear()
        self._linger.clear()
        self._ino.clear()
        self._multi = None              # from here on, socket/timer callbacks do nothing
        multi.close()                   # closes every connection
        for easy in self._handles:
            easy.curl.close()
        self._handles.clear()
        self._easy_of.clear()
        self._pool.clear()
        for sock in self._socks.values():
            sock.release()
            METER.closing(sock)         # type: ignore[arg-type]   # their last readings
        self._socks.clear()


def _url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


class Curl1Transport(CurlTransport):
    version = "1.1"


class Curl2Transport(CurlTransport):
    version = "2"


class Curl3Transport(CurlTransport):
    version = "3"
