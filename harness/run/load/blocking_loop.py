"""The closed loop of one user through a blocking client (harness.run.load.loadgen's blocking path).

Sequential: send, receive, decode and record, then the next request; every step of the
client is in series with the server's.

Overlapped (where the client can send and receive in two calls): as soon as response N
is received, request N+1 is sent, and N is decoded and recorded while N+1 is with the
server. The wire still carries one request at a time (N+1 leaves after N's last
byte arrived), N's latency is still start -> received + its own decode time, and the
client's bookkeeping no longer lengthens the cycle: at concurrency 1 throughput then
measures the server and the protocol, not the client's decode (a 154 KB JSON float
embedding costs ~250-400 us to decode, more than wrk's whole client).

The one risk is that N's decode and recording outlast the server's answer to N+1:
N+1's response would then wait in the socket and be stamped late (by up to that
work's length). Before every read the loop asks the transport whether the response is
already there; such a read is counted (`late_reads` in the row). A few
are noise that a sequential client meets as well (the client thread preempted on a
shared machine, a GC pause, the recorder folding its batches into the histograms), so
the loop goes sequential for the rest of the point only when late reads are
systematic: at least LATE_LIMIT and more than LATE_SHARE of the requests. Then the
server answers faster than the client's own work, and overlapping would skew stamps.
"""

from __future__ import annotations

from typing import Any, Callable

from clients.base import ClientError, clock_ns

from harness.measure.recorder import Recorder

LATE_LIMIT = 3      # late reads before the overlap may be given up for the point,
LATE_SHARE = 0.05   # and only when more than this share of the requests read late


class BlockingLoop:
    """One user's requests, `requests` of them or until `duration_s` has passed."""

    def __init__(self, client: Any, next_request: Callable[[], dict], rec: Recorder,
                 on_done: Callable[[], None], overlap: bool,
                 clock: Callable[[], int] = clock_ns) -> None:
        self.client, self.next_request, self.rec, self.on_done = (client, next_request,
                                                                  rec, on_done)
        self.overlap = overlap and getattr(client, "can_overlap", False)
        self.late_reads = 0
        self.completed = 0              # responses received (the overlap's requests)
        self.stop = False               # set from another thread: ends after this request
        self._left: int | None = None
        self._deadline: int | None = None
        self._clock = clock             # ns (tests/unit/test_blocking_loop.py passes its own)

    def run(self, requests: int | None, duration_s: float | None) -> None:
        self._left = requests
        self._deadline = self._clock() + int(duration_s * 1e9) if duration_s else None
        if self.overlap:
            self._overlapped()
        else:
            self._sequential()

    def _may_start(self) -> bool:
        if self.stop or self._left == 0 or (self._deadline is not None
                                            and self._clock() >= self._deadline):
            return False
        if self._left is not None:
            self._left -= 1
        return True

    def _failed(self, exc: Exception, start: int) -> None:
        if isinstance(exc, ClientError):
            self.rec.error(exc.kind, str(exc), None, start, self._clock())
        else:           # a bug in a client must not end the run silently
            self.rec.error("internal", f"{type(exc).__name__}: {exc}", None, start,
                           self._clock())
        self.on_done()

    def _sequential(self) -> None:
        embed, next_request, unary = self.client.embed_sync, self.next_request, self.rec.unary
        while self._may_start():
            start = self._clock()
            try:
                unary(embed(next_request()), None)      # closed loop: no intended time
            except Exception as exc:
                self._failed(exc, start)
                continue
            self.on_done()

    def _send(self) -> tuple | None:
        start = self._clock()
        try:
            return self.client.send(self.next_request())
        except Exception as exc:
            self._failed(exc, start)
            return None

    def _overlapped(self) -> None:
        client, unary = self.client, self.rec.unary
        sent = None
        while True:
            if sent is None:
                if not self._may_start():
                    return
                sent = self._send()
                continue
            try:
                got = client.receive(sent)
            except Exception as exc:
                self._failed(exc, sent[0])
                sent = None
                continue
            self.completed += 1
            # N is in: N+1 goes out before N is decoded (unless the loop went sequential).
            sent = self._send() if self.overlap and self._may_start() else None
            try:
                unary(client.complete(got), None)
            except Exception as exc:
                self._failed(exc, got[0])
            else:
                self.on_done()
            if sent is not None and client.response_waiting():
                self.late_reads += 1    # N's decode outlasted the server's answer to N+1
                self.rec.late_reads += 1
                if self.late_reads >= LATE_LIMIT and \
                        self.late_reads > LATE_SHARE * self.completed:
                    self.overlap = False
