"""Load workers as Ray actors (a scenario's `cluster:`), under the local workers' contract.

Each actor runs the worker's own LoadRunner (harness.run.load.loadgen) in its asyncio
loop: `warm` runs the warmup and answers the Warm event; `measure` waits for the
shared start instant, runs the measured requests and answers the Result event (the
Recorder's JSON with its HdrHistograms), which the runner merges exactly as it merges
local workers'. Jobs are the runner's own LoadJobs, so an open loop's rate is already
split over the workers and their seeds differ.

Time: the actors start together at one wall-clock instant, each converted to its own
clock with its measured offset (the midpoint of the lowest-RTT of a few round trips,
error bounded by half that RTT). Latencies are intervals on one clock and need no
offset; one-way delays pair the server's clock with a worker's, so they are only kept
where every worker shares the driver's host (and so the servers' clock).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from base.errors import RunFailed
from harness.run.events import Result, Warm, decode, encode
from harness.run.job import LoadJob
from harness.run.watchdog import PointFailed, phase_deadline_s
from harness.scenario.cluster import INSTALL, Cluster

START_AHEAD_S = 0.5         # the shared start instant: this far after "go" is decided
PLACE_TIMEOUT_S = 120.0     # for every actor to be placed and answer (a node may pull the env)
OFFSET_SAMPLES = 5


class LoadActor:
    """One load worker on a Ray node (made a Ray actor class by RayWorkers)."""

    def __init__(self) -> None:
        self.runner: Any = None

    def identity(self) -> dict[str, Any]:
        import ray
        return {"host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
                "pid": os.getpid()}

    def clock(self) -> int:
        return time.time_ns()

    async def warm(self, job_json: bytes) -> bytes:
        from harness.run.load.loadgen import LoadRunner
        if self.runner is not None:
            await self.runner.close()
        self.runner = LoadRunner(LoadJob.from_json(job_json))
        warm = await self.runner.warmup()
        sample = next(iter(warm.error_samples.values()), "")
        return encode(Warm(warm.error_count, warm.n, sample))

    def progress(self) -> int:
        return self.runner.done if self.runner is not None else 0

    async def measure(self, start_wall_ns: int) -> bytes:
        delay = (start_wall_ns - time.time_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            return encode(await self.runner.measure())
        finally:
            await self.runner.close()
            self.runner = None


def _reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A host:port cluster address must answer before Ray is asked to join it: Ray
    itself retries an unreachable head for minutes."""
    if address in (None, "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout_s).close()
    except (OSError, ValueError) as exc:
        raise RunFailed(f"cluster {address}: nothing answers there ({exc}); start the head "
                        f"with `ray start --head --port=PORT` or give its address") from None


@dataclass
class WorkerInfo:
    host: str
    node: str                   # the Ray node it ran on (id prefix, and its address)
    pid: int
    offset_ms: float            # its wall clock minus the driver's
    offset_error_ms: float      # half the round trip it was measured over
    requests: int = 0           # measured requests, over every point
    cpu_s: float = 0.0          # its client CPU, over every point
    points: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}


@dataclass
class RayWorkers:
    """The cluster's actors for one run: started once, reused by every point."""
    cluster: Cluster
    actors: list[Any] = field(default_factory=list)
    info: list[WorkerInfo] = field(default_factory=list)
    retired: list[WorkerInfo] = field(default_factory=list)   # replaced after a failure
    _jobs: int = 0

    def start(self) -> None:
        try:
            import ray
        except ImportError:
            from base.errors import BadInput
            raise BadInput(f"cluster: Ray is not installed: {INSTALL}") from None
        local = self.cluster.address == "local"
        address = None if local else self.cluster.address
        _reachable(address)
        # A cluster started here gets a CPU per worker even on fewer cores (as local
        # worker processes would share them), else its workers could never be placed.
        cpus = max(self.cluster.workers, os.cpu_count() or 1) if local else None
        # Ray's init installs its own SIGTERM handling, which would end the run without
        # its cleanup (servers left running, no summary): the runner's is put back.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            ray.init(address=address, num_cpus=cpus, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True, configure_logging=False)
        except Exception as exc:    # noqa: BLE001 - Ray's own errors vary: say it in a line
            hint = ("; start one on this host with `ray start --head`, give its address "
                    "(--cluster HOST:6379), or run the workers in-process with --cluster "
                    "local") if self.cluster.address == "auto" else ""
            raise RunFailed(f"cluster {self.cluster.address}: Ray could not connect "
                            f"({str(exc).splitlines()[0][:200]}){hint}") from None
        finally:
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
        have = ray.cluster_resources().get("CPU", 0)
        if have < self.cluster.workers:
            raise RunFailed(f"cluster {self.cluster.address}: {self.cluster.workers} workers "
                            f"need a CPU each and the cluster has {have:g}: lower "
                            f"cluster.workers or add nodes")
        self._spawn()

    def _spawn(self) -> None:
        """Fresh actors (at the start, and after a failed point killed or lost some: the
        next point must not run on dead ones); the replaced ones' counts are kept."""
        import ray
        self._kill_all(ray)
        self.retired += self.info
        actor = ray.remote(num_cpus=1)(LoadActor).options(scheduling_strategy="SPREAD")
        self.actors = [actor.remote() for _ in range(self.cluster.workers)]
        try:
            ids = ray.get([a.identity.remote() for a in self.actors], timeout=PLACE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise RunFailed(f"cluster {self.cluster.address}: {self.cluster.workers} workers "
                            f"were not all placed within {PLACE_TIMEOUT_S:.0f} s (CPUs taken "
                            f"by other jobs, or nodes lost)") from None
        where = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}
        self.info = [WorkerInfo(i["host"], f"{i['node'][:8]} ({where.get(i['node'], '?')})",
                                i["pid"], *self._offset(a))
                     for a, i in zip(self.actors, ids)]

    def _offset(self, actor: Any) -> tuple[float, float]:
        import ray
        best = None
        for _ in range(OFFSET_SAMPLES):
            t0 = time.time_ns()
            remote = ray.get(actor.clock.remote())
            t1 = time.time_ns()
            if best is None or t1 - t0 < best[1]:
                best = (remote - (t0 + t1) // 2, t1 - t0)
        return best[0] / 1e6, best[1] / 2e6

    @property
    def foreign_hosts(self) -> list[str]:
        here = socket.gethostname()
        return sorted({w.host for w in self.info if w.host != here})

    def warm(self, jobs: list[LoadJob]) -> list[Warm]:
        import ray
        if len(jobs) > len(self.actors):
            raise PointFailed(f"{len(jobs)} jobs for {len(self.actors)} cluster workers")
        self._jobs = len(jobs)
        refs = [a.warm.remote(j.to_json()) for a, j in zip(self.actors, jobs)]
        timeout = max(phase_deadline_s(j, "warm") for j in jobs)
        try:
            return [decode(x) for x in self._get(ray, refs, timeout, "warm")]
        except PointFailed:
            self._spawn()
            raise

    def measure(self, jobs: list[LoadJob], on_progress: Callable[[int], None]
                ) -> list[Result]:
        """Start every worker at one instant, wait for their results (reporting the
        requests done meanwhile); a worker that fails fails the point."""
        import ray
        start = time.time_ns() + int(START_AHEAD_S * 1e9)
        actors, info = self.actors[:self._jobs], self.info[:self._jobs]
        refs = [a.measure.remote(start + int(w.offset_ms * 1e6)) for a, w in zip(actors, info)]
        deadline = time.monotonic() + START_AHEAD_S + max(phase_deadline_s(j, "result")
                                                          for j in jobs)
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            if pending:
                on_progress(sum(ray.get([a.progress.remote() for a in actors])))
            if time.monotonic() > deadline:
                self._spawn()
                raise PointFailed(f"cluster workers did not finish within their plan "
                                  f"({len(pending)} of {len(refs)} still running): killed")
        try:
            results = [decode(x) for x in self._get(ray, refs, 5.0, "result")]
        except PointFailed:
            self._spawn()
            raise
        for w, r in zip(info, results):
            w.requests += r.recorder["n"]
            w.cpu_s += r.client_cpu_s
            w.points += 1
        return results

    @staticmethod
    def _get(ray: Any, refs: list[Any], timeout: float, phase: str) -> list[bytes]:
        try:
            return ray.get(refs, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise PointFailed(f"cluster workers did not reach '{phase}' within "
                              f"{timeout:.0f} s") from None
        except ray.exceptions.RayError as exc:
            raise PointFailed(f"a cluster worker failed in '{phase}': "
                              f"{str(exc).splitlines()[0]}") from None

    def _kill_all(self, ray: Any) -> None:
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:       # noqa: BLE001 - already gone
                pass
        self.actors = []

    def meta(self) -> dict[str, Any]:
        return {"engine": "ray", "address": self.cluster.address,
                "workers": [w.to_dict() for w in self.retired + self.info],
                "one_way_delay": ("kept: every worker shares the servers' host clock"
                                  if not self.foreign_hosts else
                                  f"not reported: workers on {', '.join(self.foreign_hosts)} "
                                  f"do not share the servers' clock")}

    def stop(self) -> None:
        try:
            import ray
        except ImportError:
            return
        self._kill_all(ray)
        if ray.is_initialized():
            ray.shutdown()
