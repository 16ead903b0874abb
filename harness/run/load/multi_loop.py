"""The closed loop of C users through one blocking multi client (harness.run.load.loadgen's
blocking path above concurrency 1; clients.blocking.rest.multi_client).

One thread, C users, each with one request in flight at a time. Every wake-up hands
back the transfers that ended; each of their users at once gets its next request, the
new requests leave together in one perform, and only then are the ended responses
decoded and recorded (overlapped, as harness.run.load.blocking_loop does for one
user): the client's bookkeeping never holds back a user's next request. Responses that
arrive during that bookkeeping are stamped at the next perform, as the asyncio path
stamps them when its loop gets to them.

`overlap=False` ("sequential"): each ended response is decoded and recorded before its
user's next request is added.
"""

from __future__ import annotations

from harness.run.load.blocking_loop import BlockingLoop


class MultiLoop(BlockingLoop):
    """`client.users` users' requests, `requests` of them in all or until `duration_s`."""

    def run(self, requests: int | None, duration_s: float | None) -> None:
        self._left = requests
        self._deadline = self._clock() + int(duration_s * 1e9) if duration_s else None
        client = self.client
        transport = client.transport
        started: list[tuple[int, int] | None] = [None] * client.users
        for user in range(client.users):
            if not self._start(user, started):
                break
        transport.drive()               # every user's first request in one pass
        overlap = self.overlap
        while not self.stop:
            ended = transport.wait()
            if not ended:
                return                  # nothing in flight: every user is done
            done = []
            for item in ended:
                t_start, up = started[item[0]]      # type: ignore[misc]
                started[item[0]] = None
                try:
                    got = transport.finish(item)
                except Exception as exc:
                    self._failed(exc, t_start)
                else:
                    self.completed += 1
                    if overlap:
                        done.append((t_start, up, got))
                    else:
                        self._complete((t_start, up, got))
                self._start(item[0], started)
            transport.drive()           # the next requests leave before any decode
            for got in done:
                self._complete(got)

    def _start(self, user: int, started: list) -> bool:
        """User `user`'s next request, if the run's budget allows one (False when it
        does not). A request libcurl refused is recorded as that user's error."""
        if not self._may_start():
            return False
        start = self._clock()
        try:
            started[user] = self.client.send_user(user, self.next_request())
        except Exception as exc:
            self._failed(exc, start)
        return True

    def _complete(self, got: tuple) -> None:
        try:
            self.rec.unary(self.client.complete(got), None)   # closed loop: no intended time
        except Exception as exc:
            self._failed(exc, got[0])
        else:
            self.on_done()
