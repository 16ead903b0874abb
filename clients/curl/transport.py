"""CurlTransport: one libcurl multi handle on the running asyncio loop (how and why:
the package docstring, clients/curl/__init__.py)."""
from __future__ import annotations

import asyncio
import os
import select
from typing import ClassVar

import pycurl

from clients.base import (ClientError, ConnectError, ConnectionLost, FallbackError,
                          ProtocolViolation, Target, clock_ns)
from clients.curl.easy import (CONNECT_ERRORS, CSELECT_IN, CSELECT_OUT, E_HTTP2, INFO_HTTP_VERSION,
                               INFO_VERSION, LOCAL_PORT, NO_HEADERS, NO_PROXY, NUM_CONNECTS,
                               PHASE_INFOS, PHASE_NAMES, POLL_REMOVE, POSTFIELDS, PROTOCOL_ERRORS,
                               RECEIVE_BUFFER, SOCKET_TIMEOUT, STALE_CONNECTION, TLS_VERSIONS,
                               VERSION_NAMES, CurlExchange, CurlSocket, Easy, final_block,
                               track_socket, url_host)
from clients.http_api import Headers, HttpExchange, HttpResponse, HttpTransport
from clients.transport.wire import METER


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
        if self.version not in INFO_VERSION:
            raise ValueError(f"HTTP version must be one of {sorted(INFO_VERSION)}, "
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
        self._want = INFO_VERSION[self.version]
        self._multiplex = self.version != "1.1"
        name, host = url_host(target.server_name), url_host(target.host)
        self._prefix = f"{'https' if tls else 'http'}://{name}:{target.port}".encode()
        self._connect_to = ([f"{name}:{target.port}:{host}:{target.port}"]
                            if target.server_name != target.host else None)
        self._track_sockets = self.version != "3"     # QUIC's UDP: namespace counters only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._multi: pycurl.CurlMulti | None = None
        self._pool: list[Easy] = []
        self._handles: list[Easy] = []
        self._easy_of: dict[pycurl.Curl, Easy] = {}
        self._active: set[Easy] = set()         # attached to the multi
        self._watch: dict[int, int] = {}         # fd -> mask registered with the loop
        # reuse=True: fds libcurl stopped watching (an idle connection, its eventfd) whose
        # loop reader is kept, so the next request on them costs no epoll_ctl pair.
        self._linger: set[int] = set()
        self._linger_ok = reuse and self.linger_idle
        self._ino: dict[int, int] = {}           # fd -> inode when first registered
        self._adding = False
        self._socks: dict[int, CurlSocket] = {}
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_now = False
        self._added = 0
        self.headed: list[Easy] = []            # header blocks completed in this action
        self.seq = 0                              # socket_action calls so far
        self._unstamped: list[Easy] = []         # fetch() transfers with no header yet
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

    def _new_easy(self) -> Easy:
        e = Easy(self)
        e.setopt(pycurl.NOSIGNAL, 1)
        e.setopt(pycurl.PROXY, NO_PROXY)
        e.setopt(pycurl.HTTP_VERSION, self._http_version)
        e.setopt(pycurl.BUFFERSIZE, RECEIVE_BUFFER)
        if self._connect_to:
            e.setopt(pycurl.CONNECT_TO, self._connect_to)
        if self.tls:
            if self.target.ca is not None:
                e.setopt(pycurl.CAINFO, str(self.target.ca))
            e.setopt(pycurl.SSL_SESSIONID_CACHE, 0)
            if self.target.tls_version is not None and self._http_version != pycurl.CURL_HTTP_VERSION_3ONLY:
                e.setopt(pycurl.SSLVERSION, TLS_VERSIONS[self.target.tls_version])
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
               whole: bool) -> CurlExchange:
        if self._multi is None:
            self._open()
        easy = self._pool.pop() if self._pool else self._new_easy()
        if easy.whole is not whole:
            easy.set_mode(whole)
        if whole:                       # easy.lines and .parts are empty (_complete, abandon)
            self._unstamped.append(easy)
        ex = CurlExchange(self, easy, self._loop, whole)     # type: ignore[arg-type]
        easy.ex = ex
        if path != easy.path:
            easy.setopt(pycurl.URL, self._prefix + path)
            easy.path = path
        if method == b"POST":
            if easy.method != b"POST":
                self._set_method(easy, method)
            easy.setopt(POSTFIELDS, body)
        elif method == b"GET" and not body:
            if easy.method != b"GET":
                self._set_method(easy, method)
        else:
            self._set_method(easy, method, body)
        if headers is not easy.hdrs:
            easy.setopt(pycurl.HTTPHEADER, [k + b": " + v for k, v in headers] + NO_HEADERS)
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
    def _set_method(easy: Easy, method: bytes, body: bytes = b"") -> None:
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

    def _publish(self, easy: Easy) -> bool:
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
        new = easy.getinfo(NUM_CONNECTS) > 0
        if new:
            connect_ns = 1000 * easy.getinfo(pycurl.APPCONNECT_TIME_T if self.tls
                                             else pycurl.CONNECT_TIME_T)
        ex.response = HttpResponse(ex.status, None, ex.t_first, new, connect_ns,
                                   easy.getinfo(LOCAL_PORT), ex.lines[1:])
        ex.ready.set_result(None)
        return True

    def _check_version(self, easy: Easy, ex: CurlExchange) -> bool:
        got = easy.getinfo(INFO_HTTP_VERSION)
        if got == self._want:
            return True
        ex.fail(FallbackError(
            f"asked for HTTP/{self.version}, server answered HTTP/"
            f"{VERSION_NAMES.get(got, got)} ({self._prefix.decode()})"))
        return False

    def abandon(self, easy: Easy) -> None:
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
        self._action(SOCKET_TIMEOUT, 0)

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
        if self._linger and (done or fd == SOCKET_TIMEOUT):
            self._check_linger()

    def _drain(self) -> None:
        multi = self._multi
        _, ok, failed = multi.info_read()          # type: ignore[union-attr]
        easy_of = self._easy_of
        for curl in ok:
            self._done(easy_of[curl], None, "")
        for curl, code, message in failed:
            self._done(easy_of[curl], code, message)

    def _done(self, easy: Easy, code: int | None, message: str) -> None:
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
        if (code in STALE_CONNECTION and ex is not None and not ex.retried and not ex.t_first
                and easy.getinfo(NUM_CONNECTS) == 0):
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
            ex.curl_phases = dict(zip(PHASE_NAMES, map(easy.getinfo, PHASE_INFOS)))
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

    def _complete(self, easy: Easy, ex: CurlExchange, code: int | None) -> None:
        """A fetch() transfer ended: its header lines and body, as libcurl appended them."""
        if ex.t_first == 0 and easy in self._unstamped:
            self._unstamped.remove(easy)         # ended before any header line
        lines, parts = easy.lines, easy.parts
        start, end, status = final_block(lines, ex)
        if end >= 0 and self._check_version(easy, ex):
            new = easy.getinfo(NUM_CONNECTS) > 0
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

    def _error(self, code: int, message: str, ex: CurlExchange) -> ClientError:
        where = f"{self._prefix.decode()} via {self.target.host}:{self.target.port}"
        text = f"HTTP/{self.version} {where}: curl error {code}: {message}"
        if code in PROTOCOL_ERRORS:
            return ProtocolViolation(text)
        if ex.response is None:
            # The connection (TCP, TLS, QUIC) could not be set up: a connect-phase code,
            # libcurl's own "Failed to connect to ..." (QUIC to a closed port is code 55),
            # or the request never got as far as being sent.
            if (code in CONNECT_ERRORS or message.startswith("Failed to connect")
                    or not (ex.curl_phases or {}).get("pretransfer")):
                return ConnectError(text)
            if self._http_version == pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE and (
                    code == E_HTTP2 or "SETTINGS" in message):   # an HTTP/1.x answer
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
        if what == POLL_REMOVE or what == 0:          # POLL_REMOVE or POLL_NONE
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
                loop.add_reader(fd, self._action, fd, CSELECT_IN)     # type: ignore[union-attr]
            else:
                loop.remove_reader(fd)                                   # type: ignore[union-attr]
        if (old ^ new) & 2:
            if new & 2:
                loop.add_writer(fd, self._action, fd, CSELECT_OUT)    # type: ignore[union-attr]
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
        self._action(SOCKET_TIMEOUT, 0)

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


class Curl1Transport(CurlTransport):
    version = "1.1"


class Curl2Transport(CurlTransport):
    version = "2"


class Curl3Transport(CurlTransport):
    version = "3"
