"""libcurl's per-request side: the easy handle with its header/body callbacks, the
exchange it fills, the sockets libcurl opens, and the option/error tables."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import os
import socket
from typing import Protocol

import pycurl

from clients.base import ClientError, ProtocolViolation, clock_ns
from clients.http_api import Headers, HttpResponse, QueuedExchange
from clients.transport.wire import METER


class TransferOwner(Protocol):
    """What a handle and its exchange use of the transport driving them
    (clients.curl.transport.CurlTransport), named here so this module needs no import
    of it: the transport imports this module, not the other way round."""

    seq: int                    # socket_action calls so far
    headed: list[Easy]          # handles whose header block ended in this action

    def abandon(self, easy: Easy) -> None: ...


# CURLINFO_HTTP_VERSION values and the CURLOPT_HTTP_VERSION asked for each version.
INFO_VERSION = {"1.1": pycurl.CURL_HTTP_VERSION_1_1, "2": pycurl.CURL_HTTP_VERSION_2_0,
                 "3": pycurl.CURL_HTTP_VERSION_3}
VERSION_NAMES = {pycurl.CURL_HTTP_VERSION_1_0: "1.0", pycurl.CURL_HTTP_VERSION_1_1: "1.1",
                  pycurl.CURL_HTTP_VERSION_2_0: "2", pycurl.CURL_HTTP_VERSION_3: "3"}

# libcurl error codes (some are missing from pycurl's constants).
CONNECT_ERRORS = frozenset({
    5, 6, 7,            # could not resolve proxy / host, could not connect
    28,                 # timed out (only the connect timeout is set)
    35, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98,   # TLS set-up
    96,                 # QUIC connect error
})
PROTOCOL_ERRORS = frozenset({1, 8, 100})     # unsupported protocol, weird reply, too large
# A reused connection the server had already closed (its close or GOAWAY arrived while
# the connection sat idle, unwatched): HTTP/2 framing error, nothing received, send or
# receive failure. Retried once on a new connection, as libcurl itself does for HTTP/1.1
# and as the Python transports do by noticing the close while idle.
STALE_CONNECTION = frozenset({16, 52, 55, 56, 92, 95})
E_HTTP2 = 16                                  # HTTP/2 framing layer error
# Headers libcurl would add that the Python transports do not send: no User-Agent
# (pycurl sets one), no "Expect: 100-continue" on large bodies.
NO_HEADERS = [b"User-Agent:", b"Expect:"]
# CURLOPT_PROXY "": libcurl would otherwise send the transfer through any http_proxy /
# https_proxy / ALL_PROXY the environment names, so the run would measure that proxy
# (or fail on it). "" disables proxies outright, without the per-transfer lookup.
NO_PROXY = ""

_PHASES = (("namelookup", pycurl.NAMELOOKUP_TIME_T), ("connect", pycurl.CONNECT_TIME_T),
           ("appconnect", pycurl.APPCONNECT_TIME_T), ("pretransfer", pycurl.PRETRANSFER_TIME_T),
           ("starttransfer", pycurl.STARTTRANSFER_TIME_T), ("total", pycurl.TOTAL_TIME_T))

PHASE_NAMES = tuple(name for name, _ in _PHASES)
# Exactly one TLS version, as the scenario's tls_version asks (QUIC is always 1.3).
TLS_VERSIONS = {"1.2": pycurl.SSLVERSION_TLSv1_2 | pycurl.SSLVERSION_MAX_TLSv1_2,
                 "1.3": pycurl.SSLVERSION_TLSv1_3 | pycurl.SSLVERSION_MAX_TLSv1_3}
PHASE_INFOS = tuple(info for _, info in _PHASES)

POLL_REMOVE = pycurl.POLL_REMOVE
CSELECT_IN = pycurl.CSELECT_IN
CSELECT_OUT = pycurl.CSELECT_OUT
SOCKET_TIMEOUT = pycurl.SOCKET_TIMEOUT
INFO_HTTP_VERSION = pycurl.INFO_HTTP_VERSION
NUM_CONNECTS = pycurl.NUM_CONNECTS
LOCAL_PORT = pycurl.LOCAL_PORT
POSTFIELDS = pycurl.POSTFIELDS

RECEIVE_BUFFER = 512 * 1024     # fewer, larger write callbacks for big bodies (HTTP/1.1)


def final_block(lines: list[bytes], ex: "CurlExchange") -> tuple[int, int, int]:
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


def track_socket(socks: dict[int, "CurlSocket"], fd: int) -> None:
    """Meter a socket libcurl just opened (its SOCKOPTFUNCTION), after taking the last
    reading of the one that had this fd number before, if libcurl closed it."""
    old = socks.pop(fd, None)
    if old is not None:
        old.release()
        METER.closing(old)              # type: ignore[arg-type]   # its last reading
    try:
        sock = CurlSocket(fd)
    except OSError:
        return
    socks[fd] = sock
    METER.track(sock)                   # type: ignore[arg-type]


class CurlSocket:
    """A libcurl-owned TCP socket as clients.transport.wire.METER sees it (fileno + getsockopt).

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


class Easy:
    """A pooled easy handle; its callbacks forward to the exchange it is serving.

    A plain object around the pycurl.Curl rather than a subclass of it: attribute
    access on pycurl objects goes through pycurl's own getattro (a string-compared
    method table first), which showed up in profiles at a dozen lookups per request.
    """

    __slots__ = ("curl", "setopt", "getinfo", "owner", "ex", "path", "method", "hdrs",
                 "seq", "t", "whole", "lines", "parts")

    def __init__(self, owner: TransferOwner) -> None:
        self.curl = curl = pycurl.Curl()
        self.setopt = curl.setopt
        self.getinfo = curl.getinfo
        self.owner = owner
        self.ex: CurlExchange | None = None
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


class CurlExchange(QueuedExchange):
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

    def __init__(self, transport: TransferOwner, easy: Easy,
                 loop: asyncio.AbstractEventLoop, whole: bool) -> None:
        self.transport = transport
        self.easy: Easy | None = easy          # None once the transfer left the multi
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


def url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host
