"""Closed-loop and open-loop load against one protocol, inside one worker process.

Closed loop: `concurrency` users, each sending its next request when the last one
ended. Open loop: arrivals on a schedule (poisson, constant or gamma inter-arrival
times) regardless of responses; latency counts from the *intended* start, so a stalled
server or client cannot hide its queueing (coordinated omission, as wrk2 corrects it),
and requests that start more than 1 ms late are counted.

Client path: a closed loop where this worker has exactly one user on one keep-alive
connection, asking for unary requests, runs through a blocking client
(clients.blocking.rest: one socket for the python engine's rest-h1, libcurl's easy
interface for the curl engine's rest-h1 / rest-h2 / rest-h3) in one thread, with no
event loop per request: at concurrency 1 all client CPU is in series with the server's.
Above one user the curl engine's REST cells run the same way, every user's transfer on
one CurlMulti in one thread (harness.run.load.multi_loop; not with staggered starts):
on a shared machine the client's CPU per request is taken from the server's. Same
request, same stamps, same UnaryResult and Recorder, so every metric keeps its
definition. `LoadJob.client_path` = "auto" (that rule), "async" (never) or "blocking"
(required; an error where there is none) or "sequential" (blocking, without overlapping
the decode with the next request: harness.run.load.blocking_loop); what ran is in the result's
`client_path`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any, Callable

from clients import open_client
from clients.base import Client, ClientError, Target, clock_ns
from clients.transport.resolver import Resolver
from clients.transport.wire import METER
from base.clock import sleep_until_ns

from harness.run.load.blocking_loop import BlockingLoop
from harness.run.load.multi_loop import MultiLoop
from harness.run.load.pipeline import Pipeline
from base.protocols import STREAM_OF
from harness.measure.recorder import Recorder
from harness.run.events import Result
from harness.run.job import LoadJob
from harness.scenario.workload import embed_requests, stream_request

CLIENT_PATHS = ("auto", "async", "blocking", "sequential")

# Open-loop schedules sleep on CLOCK_MONOTONIC and stamp with perf_counter_ns: on Linux
# both are CLOCK_MONOTONIC, which is what makes intended and actual times comparable.
assert "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation


class _Workload:
    def __init__(self, job: LoadJob) -> None:
        w = job.workload
        self.streaming = w.type == "stream"
        model = job.model
        self.pipeline = Pipeline(w, job.seed, model) if w.type == "pipeline" else None
        if self.pipeline is not None:
            self.next_request = lambda: None
        elif self.streaming:
            req = stream_request(w, job.seed, **({"model": model} if model else {}))
            self.next_request = lambda: req
        else:
            reqs = embed_requests(w, job.seed, **({"model": model} if model else {}))
            self.next_request = reqs.__next__


class _Watchdog:
    """Per-request timeouts, one timer for every request in flight.

    asyncio.timeout() costs a TimerHandle, a heap push and a cancel per request (about
    10 us of client CPU at concurrency 1, where every microsecond of the client's is in
    series with the server's). Here a request costs two dict operations; the one timer
    sleeps until the earliest deadline in flight, cancels the tasks past theirs (as
    asyncio.timeout would: CancelledError inside, TimeoutError for the caller) and
    sleeps again. It wakes about once per timeout_s while requests complete in time.
    """

    SLACK_NS = 1_000_000        # fire just after a deadline, never just before it

    def __init__(self, timeout_s: float, *, clock: Callable[[], int] = clock_ns,
                 call_later: Callable[[float, Callable[[], None]], Any] | None = None) -> None:
        """clock: now in ns; call_later(seconds, callback): the loop's timer (a test
        passes both to drive the watchdog exactly, tests/unit/test_watchdog_timer.py)."""
        self.timeout_ns = int(timeout_s * 1e9)
        self.deadlines: dict[asyncio.Task, int | None] = {}   # None: cancelled by us
        self.timer: asyncio.TimerHandle | None = None
        self._clock, self._call_later = clock, call_later

    def arm(self, now: int) -> None:
        """After adding a deadline: sleep until the soonest one in flight (later ones are
        never earlier than it, as every request has the same timeout)."""
        self._arm(min(d for d in self.deadlines.values() if d is not None), now)

    def _arm(self, deadline: int, now: int) -> None:
        call_later = self._call_later or asyncio.get_running_loop().call_later
        self.timer = call_later((deadline - now + self.SLACK_NS) / 1e9, self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self._clock()
        soonest = None
        for task, deadline in list(self.deadlines.items()):
            if deadline is None:
                continue
            if deadline <= now:
                self.deadlines[task] = None
                task.cancel()
            elif soonest is None or deadline < soonest:
                soonest = deadline
        if soonest is not None:
            self._arm(soonest, now)


class LoadRunner:
    def __init__(self, job: LoadJob) -> None:
        self.job = job
        self.workload = _Workload(job)
        target = job.target
        options = {"max_connections": job.max_connections} if job.max_connections else {}
        self.clients: list[Client] = [open_client(job.protocol, target, reuse=job.reuse,
                                                  engine=job.engine, **options)
                                      for _ in range(max(1, job.connections))]
        # A pipeline streams its answer through the family's streaming client, one
        # beside each unary client (the same server, its own connection).
        self.stream_clients: dict[int, Client] = {}
        if self.workload.pipeline is not None:
            family = STREAM_OF[job.protocol]
            self.stream_clients = {id(c): open_client(family, target, reuse=job.reuse,
                                                      engine=job.engine, **options)
                                   for c in self.clients}
        self.rec = Recorder(slo_ns=job.slo_ns)
        self.phase_rec = self.rec       # the recorder of the phase running (warmup, measure)
        self.done = 0
        self._watchdog = _Watchdog(job.timeout_s)
        self.blocking = self._blocking_client(target)
        self._made = self.clients       # a caller that swaps in its own clients (tests)
        self._blocking_loop: BlockingLoop | None = None

    @property
    def client_path(self) -> str:
        """What runs the requests: 'asyncio' or 'blocking: <transport>[, overlapped]'."""
        if not self._use_blocking():
            return "asyncio"
        loop, name = self._blocking_loop, self.blocking.path_name
        if loop is None:
            overlapped = self.job.client_path != "sequential" and self.blocking.can_overlap
        elif loop.late_reads and not loop.overlap:      # the overlap was given up
            return f"{name}, decode overlapped until late reads, then sequential"
        else:
            overlapped = loop.overlap
        return name + (", decode overlapped" if overlapped else "")

    def _use_blocking(self) -> bool:
        return self.blocking is not None and self.clients is self._made

    def _blocking_client(self, target: Target) -> Any:
        job = self.job
        if job.client_path not in CLIENT_PATHS:
            raise ValueError(f"client_path must be one of {', '.join(CLIENT_PATHS)}, "
                             f"not {job.client_path!r}")
        if job.client_path == "async":
            return None
        client = None
        if (job.mode == "closed" and not self.workload.streaming and not job.trace
                and getattr(self.workload, "pipeline", None) is None):
            from clients.blocking.rest import blocking_client, multi_client
            if job.concurrency == 1 and max(1, job.connections) == 1:
                client = blocking_client(job.protocol, job.engine, target, reuse=job.reuse,
                                         timeout_s=job.timeout_s)
            elif job.concurrency > 1 and not job.stagger_ms:   # staggered: asyncio's users
                client = multi_client(job.protocol, job.engine, target,
                                      users=job.concurrency, clients=max(1, job.connections),
                                      reuse=job.reuse, timeout_s=job.timeout_s,
                                      max_connections=job.max_connections or None)
        if client is None and job.client_path in ("blocking", "sequential"):
            raise ValueError(f"no blocking client path for {job.protocol} (engine "
                             f"{job.engine}, {job.mode} loop, concurrency {job.concurrency}, "
                             f"{max(1, job.connections)} connection(s), reuse={job.reuse})")
        return client

    async def _closed_blocking(self, rec: Recorder, requests: int | None,
                               duration_s: float | None) -> None:
        """The closed loop of the blocking client's user(s), in a thread (the
        event loop stays free for the worker's progress reports)."""
        loop_class = MultiLoop if hasattr(self.blocking, "send_user") else BlockingLoop
        loop = loop_class(self.blocking, self.workload.next_request, rec, self._count,
                          overlap=self.job.client_path != "sequential")
        self._blocking_loop = loop
        fut = asyncio.get_running_loop().run_in_executor(None, loop.run, requests,
                                                         duration_s)
        try:
            await fut
        except BaseException:
            loop.stop = True            # cancelled: the thread ends after this request
            raise

    def _count(self) -> None:
        self.done += 1

    async def _one(self, client: Client, rec: Recorder, intended_ns: int | None,
                   task: asyncio.Task | None = None) -> None:
        """One request; intended_ns is the open-loop schedule's time (None: closed loop).
        `task` is the task running it (found if not given)."""
        start = clock_ns()
        request = self.workload.next_request()
        if task is None:
            task = asyncio.current_task()
        watchdog = self._watchdog
        deadlines = watchdog.deadlines
        deadlines[task] = start + watchdog.timeout_ns     # type: ignore[index]
        if watchdog.timer is None:
            watchdog.arm(start)
        try:
            if self.workload.streaming:
                result = await client.generate(request)
                rec.stream(result, intended_ns)
                if rec.traces is not None:
                    rec.trace(result, self._connection_label(client))
            elif self.workload.pipeline is not None:
                rec.pipeline(await self.workload.pipeline.run(
                    client, self.stream_clients[id(client)]), intended_ns)
            else:
                rec.unary(await client.embed(request), intended_ns)
        except ClientError as exc:
            rec.error(exc.kind, str(exc), intended_ns, start, clock_ns())
        except asyncio.CancelledError:
            if deadlines.get(task, 0) is not None:      # type: ignore[arg-type]
                raise                   # not the watchdog's: a real cancellation
            deadlines[task] = 0         # type: ignore[index]  # handled here
            if task.uncancel() > 0:     # type: ignore[union-attr]  # cancelled by someone else too
                raise
            rec.error("timeout", f"no complete response within {self.job.timeout_s} s",
                      intended_ns, start, clock_ns())
        except TimeoutError:
            rec.error("timeout", f"no complete response within {self.job.timeout_s} s",
                      intended_ns, start, clock_ns())
        except Exception as exc:    # a bug in a client must not end the run silently
            rec.error("internal", f"{type(exc).__name__}: {exc}", intended_ns, start, clock_ns())
        finally:
            if deadlines.pop(task) is None:     # type: ignore[arg-type]
                task.uncancel()         # type: ignore[union-attr]  # the client swallowed it
        self.done += 1

    async def _closed(self, rec: Recorder, users: int, requests: int | None,
                      duration_s: float | None) -> None:
        remaining = itertools.count() if requests is None else iter(range(requests))
        t0 = clock_ns()
        deadline = t0 + int(duration_s * 1e9) if duration_s else None
        clients = self.clients
        stagger_ns = int(self.job.stagger_ms * 1e6)

        async def user(u: int) -> None:
            client = clients[u % len(clients)]
            task = asyncio.current_task()
            one = self._one
            if stagger_ns:
                await sleep_until_ns(t0 + u * stagger_ns)
            for _ in remaining:
                if deadline is not None and clock_ns() >= deadline:
                    return
                await one(client, rec, None, task)   # closed loop: no intended time

        await asyncio.gather(*(user(u) for u in range(users)))

    def _gaps(self) -> Callable[[], float]:
        job, rnd = self.job, random.Random(self.job.seed)
        mean = 1.0 / job.rate
        if job.arrival == "constant":
            return lambda: mean
        if job.arrival == "gamma":   # shape < 1: burstier than poisson, same mean rate
            k = job.gamma_shape
            return lambda: rnd.gammavariate(k, mean / k)
        return lambda: rnd.expovariate(job.rate)

    async def _open(self, rec: Recorder, requests: int | None, duration_s: float | None) -> None:
        gap = self._gaps()
        clients = itertools.cycle(self.clients)
        slots = asyncio.Semaphore(self.job.max_in_flight)
        tasks: set[asyncio.Task] = set()
        t = clock_ns()
        end = t + int(duration_s * 1e9) if duration_s else None
        for i in itertools.count():
            if requests is not None and i >= requests:
                break
            t += int(gap() * 1e9)
            if end is not None and t >= end:
                break
            await sleep_until_ns(t)
            await slots.acquire()       # at the cap, this arrival waits (and is late)
            task = asyncio.ensure_future(self._one(next(clients), rec, t))
            tasks.add(task)
            task.add_done_callback(lambda tk: (tasks.discard(tk), slots.release()))
        if tasks:
            await asyncio.gather(*tasks)

    def _connection_label(self, client: Client) -> str:
        return f"w{self.job.worker}/c{self.clients.index(client)}"

    async def warmup(self) -> Recorder:
        """Warmup requests (excluded from results); also opens the connections."""
        rec = self.phase_rec = Recorder()
        requests, users = self.job.warmup_plan()
        if requests and self._use_blocking():
            await self._closed_blocking(rec, requests, None)
        elif requests:
            await self._closed(rec, max(users, len(self.clients)), requests, None)
        self.done = 0
        return rec

    async def measure(self) -> Result:
        job = self.job
        self.phase_rec = self.rec
        if job.keep_rows:
            self.rec.rows = []
        if job.trace:
            self.rec.traces = []
        wire0, queries0 = METER.snapshot(), Resolver.sent_total
        cpu0, t0 = time.process_time() + self._child_cpu_s(), clock_ns()
        if self._use_blocking():
            await self._closed_blocking(self.rec, job.requests, job.duration_s)
        elif job.mode == "closed":
            await self._closed(self.rec, job.concurrency, job.requests, job.duration_s)
        else:
            await self._open(self.rec, job.requests, job.duration_s)
        wall_ns = clock_ns() - t0
        cpu = time.process_time() + self._child_cpu_s() - cpu0
        wire1 = METER.snapshot()
        self.rec.dns_queries = Resolver.sent_total - queries0
        return Result(wall_ns / 1e9, cpu, {k: wire1[k] - wire0[k] for k in wire1}, t0,
                      self.client_path, self.rec.to_json())

    def _child_cpu_s(self) -> float:
        """CPU of processes a client runs besides this one (the browser engine's
        Chromium): part of the client's cost."""
        return sum(c.child_cpu_s() for c in [*self.clients, *self.stream_clients.values()]
                   if hasattr(c, "child_cpu_s"))

    async def close(self) -> None:
        if self.blocking is not None:
            self.blocking.close()
        await asyncio.gather(*(c.close() for c in [*self.clients, *self.stream_clients.values()]),
                             return_exceptions=True)


