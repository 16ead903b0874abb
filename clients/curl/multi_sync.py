"""libcurl's multi interface, blocking, for C users at once: the curl engine's closed-loop
path above concurrency 1 (harness.run.load.multi_loop drives it).

clients.curl.transport runs a CurlMulti from asyncio: per readiness event a Python
callback and a socket_action, per request a future, a task step and the loop's timer
work. A closed loop of unary requests needs none of it: each user only waits for its
own response. Here one thread keeps up to C transfers (one easy handle per user) on one
CurlMulti and loops select -> perform -> info_read, as a plain CurlMulti program does
(benchmarks/curl_alone.py). Python runs once per wake-up and once per request, never
once per socket event (benchmarks/README.md, "Above one user", has what it saves).

Connection policy as CurlTransport's with one client: HTTP/1.1 keeps up to
`max_connections` keep-alive connections (None: one per user); HTTP/2 and HTTP/3
multiplex every transfer on one connection (PIPEWAIT, one connection per host). Options,
the protocol check, errors and the stale-connection retry are CurlEasyTransport's
(clients.curl.sync), which this extends; so are the stamps: t0 just before the handle is
added, t_received the clock right after the perform in which the transfer ended.
"""

from __future__ import annotations

import pycurl

from clients.base import ConnectError, Target, clock_ns
from clients.curl.easy import STALE_CONNECTION
from clients.curl.sync import (_CALL_MULTI_PERFORM, _SELECT_S, NUM_CONNECTS, CurlEasyTransport,
                               _Sent)
from clients.http_api import Headers, HttpResponse

Ended = tuple[int, int, "int | None", str]      # (user, t_received, curl code, message)


class CurlMultiUsers(CurlEasyTransport):
    """`users` handles on one CurlMulti, one transfer per user at a time, blocking."""

    def __init__(self, target: Target, *, version: str, users: int, timeout_s: float = 30.0,
                 max_connections: int | None = None) -> None:
        if users < 1:
            raise ValueError("users must be at least 1")
        super().__init__(target, version=version, timeout_s=timeout_s)
        self.users = users
        self._slots = [self._easy] + [self._new_handle() for _ in range(users - 1)]
        self._slot_of = {h.curl: i for i, h in enumerate(self._slots)}
        self._sent_of: list[_Sent | None] = [None] * users      # each user's transfer
        self._done: list[Ended] = []        # ended in a perform, not yet handed out
        self._running = 0                   # started and not yet finished
        m = pycurl.CurlMulti()
        if version == "1.1":
            m.setopt(pycurl.M_PIPELINING, pycurl.PIPE_NOTHING)
            if max_connections:
                m.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max_connections)
            # The idle-connection cache must hold every user's connection (libcurl's
            # default shrinks with the number of attached handles).
            m.setopt(pycurl.M_MAXCONNECTS, max_connections or users)
        else:
            m.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
            m.setopt(pycurl.M_MAX_HOST_CONNECTIONS, 1)
            for h in self._slots:
                h.setopt(pycurl.PIPEWAIT, 1)    # wait for the one connection, never a 2nd
        self._multi = m

    @property
    def path_name(self) -> str:
        return f"libcurl multi, {self.users} users"

    def start(self, user: int, method: bytes, path: bytes, headers: Headers,
              body: bytes) -> None:
        """Add `user`'s next transfer; it leaves on the next perform (`drive`), so that
        every request added between two performs goes out in one pass."""
        if self._sent_of[user] is not None:
            raise RuntimeError(f"user {user} already has a transfer in flight")
        h = self._slots[user]
        self._prepare(h, method, path, headers, body)
        sent = _Sent(h)
        try:
            self._add(sent)
        except pycurl.error as exc:
            raise ConnectError(f"libcurl refused the transfer: {exc}") from None
        self._sent_of[user] = sent
        self._running += 1

    def _add(self, sent: _Sent) -> None:
        sent.t0 = clock_ns()
        self._multi.add_handle(sent.handle.curl)           # type: ignore[union-attr]
        sent.handle.attached = True

    def drive(self) -> None:
        """Let libcurl do all it can without waiting; stamp and collect what ended."""
        perform, multi = self._multi.perform, self._multi     # type: ignore[union-attr]
        while perform()[0] == _CALL_MULTI_PERFORM:
            pass
        t = clock_ns()
        while True:
            queued, ok, failed = multi.info_read()         # type: ignore[union-attr]
            for curl in ok:
                self._done.append((self._slot_of[curl], t, None, ""))
            for curl, code, message in failed:
                user = self._slot_of[curl]
                if not self._retry(user, code):
                    self._done.append((user, t, code, message))
            if not queued:
                return

    def _retry(self, user: int, code: int) -> bool:
        """A reused connection the server had closed: the same request once more, on a
        new connection (as CurlEasyTransport.receive_sync does)."""
        sent = self._sent_of[user]
        h = sent.handle                                     # type: ignore[union-attr]
        if (code not in STALE_CONNECTION or sent.retried or h.lines    # type: ignore[union-attr]
                or h.getinfo(NUM_CONNECTS) != 0):
            return False
        sent.retried = True                                 # type: ignore[union-attr]
        self._remove(h)
        try:
            self._add(sent)                                 # type: ignore[arg-type]
        except pycurl.error:
            return False                # reported with the code it first ended with
        return True

    def wait(self) -> list[Ended]:
        """Block until at least one transfer has ended; those that have, each to be
        taken by `finish` before the next wait. Empty only when nothing is in flight."""
        multi = self._multi
        while not self._done:
            if not self._running:
                return []
            wait = multi.timeout()                          # type: ignore[union-attr]
            if wait:    # 0: libcurl has work left without a socket event
                multi.select(_SELECT_S if wait < 0 else min(_SELECT_S, wait / 1000))  # type: ignore[union-attr]
            self.drive()
        ended, self._done = self._done, []
        return ended

    def finish(self, ended: Ended) -> tuple[HttpResponse, bytes, int, dict[str, int]]:
        """An ended transfer's response (HttpResponse, body, t_received, libcurl's
        phases), or the ClientError it ended with; its user is free for the next."""
        user, t_end, code, message = ended
        sent, self._sent_of[user] = self._sent_of[user], None
        self._running -= 1
        h = sent.handle                                     # type: ignore[union-attr]
        if h.attached:
            self._multi.remove_handle(h.curl)               # type: ignore[union-attr]
            h.attached = False
        return self._result(h, sent.t0, t_end, code, message)    # type: ignore[union-attr]

    def close(self) -> None:
        multi, self._multi = self._multi, None
        if multi is None:
            return
        handles, self._slots, self._easy = self._slots, [], None
        self._shut(multi, handles)
