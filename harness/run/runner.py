"""Runs a scenario: servers up, every protocol x load point through worker processes,
result files after every point, servers down — also on error, Ctrl-C and SIGTERM.

The parent measures nothing itself (as pyperf): workers measure, the parent merges.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


from clients.base import Target
from clients.transport.wire import SOURCE as SOCKET_SOURCE
from servers.launcher import ServerGroup, ServerProcess
from base.paths import PACKAGE_ROOT
from base.lifetime import child_env, reap

from harness.measure.cpu import processes_cpu_s
from harness.run.environment import environment
from harness.run.implementations import client_engine, server_impl
from harness.run.ray_workers import RayWorkers
from harness.run.hol_record import SenderWatch, qlog_switch, record_hol, server_env
from harness.run.sweep import run_sweep
from harness.run.targets import external_target, off_host, remote_cpu_s, remote_target
from harness.run.events import Failure, Progress, Result, Warm, Warning, decode
from harness.run.job import LoadJob
from harness.netlab.netns import (SERVER_IP, LabUnavailable, Topology, lab_refusal,
                                  namespaces_possible)
from base.cells import Cell
from harness.measure.recorder import Recorder
from harness.scenario.groups import group_of
from harness.run.status import mark_killed_runs, runner_identity
from harness.measure.saturation import Snapshot
from harness.run.watchdog import PointFailed, phase_deadline_s, silence_limit_s
from harness.measure.results import PointKey, PointResult, ResultWriter
from harness.measure.hol_drops import StreamTrace
from harness.scenario.linkspec import LinkSpec
from harness.measure.packetlog import read_csv as read_packet_log
from harness.scenario import Connection, PlanPoint, Scenario, expand_plan
from base.errors import Interrupted, first_line

LOG_SOURCE = "emulated link's packet log (IP bytes incl. headers, sent, lost ones included)"


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def result_dir(root: Path, name: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, n = root / f"{stamp}-{name}", 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{name}-{n}"
    return path


def split(total: int | None, parts: int) -> list[int | None]:
    if total is None:
        return [None] * parts
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Runner:
    def __init__(self, scenario: Scenario, out_root: Path, progress: "ProgressSink | None",
                 *, loopback: bool = False) -> None:
        self.s = scenario
        self.slo_texts = tuple(t.text for t in scenario.slo)
        self.loopback = loopback            # never use namespaces (no wire bytes)
        self.topology: Topology | None = None
        self.network = "loopback"
        self.wire_source = "not measured"
        self.out = result_dir(out_root, scenario.name)
        self.progress = progress or ProgressSink()
        self.servers = ServerGroup()
        self.points: dict[str, PointResult] = {}
        self.status = "running"
        self.killed_runs = mark_killed_runs(out_root)   # earlier runs that were SIGKILLed
        self.writer = ResultWriter(self.out, scenario.to_dict(), environment(),
                                   {"started_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
                                    **runner_identity()})
        self.workers: list[subprocess.Popen] = []
        self.failures: list[str] = []        # points that failed; the run went on
        self.sweep_probes: set[str] = set()  # labels of the rows a sweep probed
        self.cluster = RayWorkers(scenario.cluster) if scenario.cluster else None

    # ------------------------------------------------------------ targets

    def _target(self, cell: Cell, tls_version: str | None = None
                ) -> tuple[Target, str | None, ServerProcess | None, str]:
        """(where the workers connect, the model their requests name (external targets),
        the server process if ours, the server implementation's name)."""
        if self.s.target is not None:
            target = external_target(self.s.target)
            return target, self.s.target.model, None, f"external {target.host}"
        if self.s.remote is not None:
            target = remote_target(self.s.remote, cell, self.s.uses_tls(cell.label),
                                   tls_version or self.s.tls_version[0])
            return target, None, None, f"{server_impl(cell)} on {self.s.remote.host}"
        kind = cell.kind
        h2c = kind == "h2" and not self.s.tls
        where: dict[str, Any] = {}
        fields: dict[str, Any] = {"ca": self._ca()}
        if self.topology is not None:
            where = {"host": SERVER_IP, "wrap": self.topology.wrap("server")}
            fields.update(host=SERVER_IP, server_name="wirebench.test")   # in the cert
        extra = ["--h2c-port", "0"] if h2c else []
        if self.s.uses_tls(cell.label) and kind != "h3":     # QUIC is TLS 1.3 only
            version = tls_version or self.s.tls_version[0]
            extra += ["--tls-version", version]
            fields["tls_version"] = version
        if self.s.cors is not None and kind != "grpc":      # browser pages (servers/cors.py)
            extra += ["--cors", self.s.cors]
        env = (server_env(self.out, cell.server_kind, kind) if self.topology is not None
               and self._token_stream(cell.label) else None)   # the HOL mechanism
        srv = self.servers.start(cell.server_kind, extra=extra or None, env=env, **where)
        fields["port"] = srv.info["h2c_port"] if h2c else srv.port
        if h2c:
            fields["tls"] = False
        if self.s.dns is not None:
            fields.update(self._dns_fields(where), host="wirebench.test",
                          server_name="wirebench.test")
        return Target(**fields), None, srv, server_impl(cell)

    def _dns_fields(self, where: dict[str, Any]) -> dict[str, Any]:
        """The DNS step: a DNS server next to the app server answering for its name."""
        host = where.get("host", "127.0.0.1")
        dns = self.s.dns
        srv = self.servers.start("dns", extra=["--name", "wirebench.test", "--address", host,
                                               "--ttl", str(dns.ttl_s),
                                               "--delay-ms", f"{dns.delay_ms:g}"], **where)
        return {"dns": (host, srv.port)}

    def _setup_network(self) -> None:
        """Namespaces and a link where allowed: a plain veth so wire bytes can be counted,
        or the emulated link when the scenario sets network:."""
        lab = self.s.network
        if self.s.target is not None:
            self.wire_source = "not measured: external target"
            return
        if self.s.remote is not None:      # no namespace: the clients' socket counts
            self.network = "remote"
            return
        if self.s.cluster is not None:     # the workers run where Ray puts them, not in a
            return                         # namespace here: the clients' socket counts
        if lab is not None:
            refusal = lab_refusal(self.loopback)
            if refusal:
                raise LabUnavailable(refusal)
        reason = "--loopback asked for" if self.loopback else namespaces_possible()
        if reason:
            self.wire_source = f"not measured: {reason}"
            return
        if lab is None:
            self.topology = Topology(backend="veth").__enter__()
        else:
            self.topology = Topology(backend=lab.backend,
                                     congestion_control=lab.congestion_control).__enter__()
        self.network = "veth"
        self.wire_source = "netns interface counters (IP bytes incl. headers)"
        self.writer.meta["network_lab"] = self.topology.info()

    @staticmethod
    def _ca() -> Path:
        from servers.tls import ensure_tls_files
        return ensure_tls_files().ca

    # ------------------------------------------------------------ one point

    def _jobs(self, point: PlanPoint, target: Target, model: str | None) -> list[LoadJob]:
        s, load = self.s, self.s.load
        cell = point.cell
        conn = point.connection or s.connection
        workload = s.workload_for(point.protocol)
        trace = point.link is not None and workload.type == "stream"
        n = self.cluster.cluster.workers if self.cluster else s.workers
        # Never more workers than users (closed loop) or requests: a worker without a
        # user or a request would drop its share of the requests or of the rate.
        if point.load_kind == "closed":
            n = min(n, point.concurrency)
        if load.requests is not None:
            n = min(n, load.requests)
        jobs = []
        # Open loop: each worker's in-flight requests spread over its connections.
        users = split(point.concurrency, n) if point.load_kind == "closed" else [1] * n
        for i, (share, w_users) in enumerate(zip(split(load.requests, n), users)):
            if w_users == 0 or share == 0:
                continue
            jobs.append(LoadJob(
                protocol=cell.protocol, engine=cell.client, target=target, workload=workload,
                mode=point.load_kind, concurrency=w_users or 1,
                rate=(point.rate or 0.0) / n, arrival=load.arrival,
                gamma_shape=load.gamma_shape, max_in_flight=load.max_in_flight,
                requests=share, duration_s=load.duration_s,
                warmup=s.warmup.requests, timeout_s=load.timeout_s,
                reuse=conn.policy == "reuse",
                connections=conn.connections_for(cell.protocol, w_users or 1),
                max_connections=self._pool_cap(cell, conn),
                seed=s.seed * 1000 + point.repeat * 100 + i,
                keep_rows=s.outputs.requests_csv,
                stagger_ms=load.stagger_ms or 0.0, trace=trace, worker=i,
                slo_ms={t.metric: t.value for t in s.slo} or None, model=model))
        return jobs

    @staticmethod
    def _pool_cap(cell: Cell, conn: Connection) -> int | None:
        """An explicit connection count holds for HTTP/1.1 too: one connection per client,
        its users queueing for it (else the pool would quietly open one per user)."""
        explicit = (conn.connections not in ("auto", "per_stream")
                    or conn.streams_per_connection is not None)
        if conn.policy == "reuse" and explicit and cell.kind == "h1":
            return 1
        return None

    def _spawn(self, job: LoadJob) -> subprocess.Popen:
        # stderr goes to an unlinked temp file, not a pipe: nobody reads it until the
        # worker exits, and a worker logging more than a pipe buffer (64 KiB) would block.
        err = tempfile.TemporaryFile()
        try:
            wrap = self.topology.wrap("client") if self.topology else []
            proc = subprocess.Popen(wrap + [sys.executable, "-m", "harness.run.worker"],
                                    cwd=PACKAGE_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err, env=child_env(),
                                    start_new_session=True)
        except BaseException:
            err.close()
            raise
        proc.errfile, proc.protocol = err, job.protocol   # for _events' error message
        proc.job = job                                     # for _events' plan deadline
        self.workers.append(proc)
        proc.stdin.write(job.to_json() + b"\n")
        proc.stdin.flush()
        return proc

    def _events(self, procs: list[subprocess.Popen], until: type[Warm] | type[Result],
                on_progress: Callable[[int], None] | None = None,
                server: ServerProcess | None = None) -> list[Warm] | list[Result]:
        """Read events until every worker sent `until`. A worker that dies, reports an
        error or falls silent (harness.run.watchdog), or a server that exits, fails the
        point: the others are still read to the end, and PointFailed carries what they
        reported (a dead server ends the point at once)."""
        sel = selectors.DefaultSelector()
        bufs = {p.stdout.fileno(): b"" for p in procs}
        got: dict[int, dict] = {}
        failed: dict[int, str] = {}
        done: dict[int, int] = {}
        heard = {p.pid: time.monotonic() for p in procs}
        limit = silence_limit_s(self.s.load.timeout_s)
        ends = {p.pid: time.monotonic() + phase_deadline_s(p.job, until.NAME) for p in procs}
        for p in procs:
            sel.register(p.stdout, selectors.EVENT_READ, p)
        try:
            while len(got) + len(failed) < len(procs):
                for key, _ in sel.select(timeout=0.5):
                    p = key.data
                    chunk = os.read(p.stdout.fileno(), 1 << 20)
                    if not chunk:
                        sel.unregister(p.stdout)
                        if p.pid not in got:
                            failed[p.pid] = self._worker_exit(p)
                        continue
                    heard[p.pid] = time.monotonic()
                    bufs[p.stdout.fileno()] += chunk
                    *lines, bufs[p.stdout.fileno()] = bufs[p.stdout.fileno()].split(b"\n")
                    for line in lines:
                        ev = decode(line)
                        if isinstance(ev, Failure):
                            failed[p.pid] = ev.message + "\n" + ev.traceback
                            sel.unregister(p.stdout)
                            p.kill()
                            break
                        if isinstance(ev, Warning):
                            self.progress.warning(f"worker for {p.protocol}: {ev.message}")
                        if isinstance(ev, Progress) and on_progress:
                            done[p.pid] = ev.done
                            on_progress(sum(done.values()))
                        if isinstance(ev, until):
                            got[p.pid] = ev
                if server is not None:
                    self._check_server(server)
                now = time.monotonic()
                for p in procs:
                    if p.pid not in got and p.pid not in failed and now - heard[p.pid] > limit:
                        p.kill()         # SIGKILL ends a stopped (SIGSTOP) process too
                        sel.unregister(p.stdout)
                        failed[p.pid] = (f"worker {p.pid} sent nothing for {limit:.0f} s "
                                         f"(frozen or stopped): killed")
                    elif p.pid not in got and p.pid not in failed and now > ends[p.pid]:
                        p.kill()         # alive but never done: past what its plan allows
                        sel.unregister(p.stdout)
                        failed[p.pid] = (f"worker {p.pid} did not reach '{until.NAME}' within "
                                         f"{phase_deadline_s(p.job, until.NAME):.0f} s, the most "
                                         f"its plan allows with every request timing out "
                                         f"(stuck): killed")
        finally:
            sel.close()
        if failed:
            reasons = "; ".join(f"worker for {p.protocol}: {failed[p.pid].strip()}"
                                for p in procs if p.pid in failed)
            raise PointFailed(reasons, [got[p.pid] for p in procs if p.pid in got])
        return [got[p.pid] for p in procs]

    def _remote_cpu(self, cell: Cell, target: Target) -> float | None:
        return remote_cpu_s(cell, target) if self.s.remote is not None else None

    @staticmethod
    def _check_server(server: ServerProcess) -> None:
        """A server that exited or was stopped fails its point at once (its requests
        would only time out, one timeout_s each)."""
        if not server.alive():
            code = server.proc.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            tail = server.log_tail(10).strip()
            raise PointFailed(f"the {server.kind} server {how} during the point; "
                              + (f"its log ends:\n{tail}" if tail else "its log is empty"))
        stopped = server.stopped()
        if stopped:
            raise PointFailed(f"the {server.kind} server is stopped (process "
                              f"{', '.join(map(str, stopped))} in state T, e.g. SIGSTOP): "
                              f"it was killed and a fresh one serves the next point")

    @staticmethod
    def _worker_exit(p: subprocess.Popen) -> str:
        """Why a worker's stdout closed before its result: exit status and stderr tail."""
        try:
            p.wait(5)        # EOF on stdout: it is exiting; let it finish
        except subprocess.TimeoutExpired:
            p.kill()
            reap(p)
        p.errfile.seek(0)
        err = p.errfile.read().decode(errors="replace")[-2000:]
        how = (f"killed by signal {-p.returncode}" if p.returncode and p.returncode < 0
               else f"exit code {p.returncode}")
        return f"exited early ({how}){chr(10) + err if err.strip() else ''}"

    def _token_stream(self, protocol: str) -> bool:      # what the HOL analysis reads
        return bool(getattr(self.s.workload_for(protocol), "itl_ms", None))

    def _key(self, point: PlanPoint) -> PointKey:
        network = point.link.name if point.link is not None else self.network
        conn = str(point.connection.label) if point.connection is not None else None
        return PointKey(point.protocol, point.load_kind, point.concurrency, point.rate,
                        network, conn, point.tls_version, point.dns_cache, point.resumption)

    def _set_link(self, link: LinkSpec | None) -> None:
        """(Re)configure the emulated link. Configuring restarts its drop-list counts,
        blackhole clock and loss RNG, so this runs again just before "go": the nth packet
        of a drop-list is the nth of the measured traffic, whatever the warmup sent."""
        if link is not None:
            self.topology.configure(link)

    def run_point(self, point: PlanPoint) -> None:
        cell = point.cell
        self._set_link(point.link)
        target, model, srv, impl = self._target(cell, point.tls_version)
        qlog_switch(self.out, cell, point.link if srv is not None else None)
        if point.dns_cache is not None:
            target = dataclasses.replace(target, dns_cache=point.dns_cache)
        if point.resumption is not None:     # the clients resume new connections
            target = dataclasses.replace(target, resumption=point.resumption)
        key = self._key(point)
        result = self.points.setdefault(key.label, PointResult(key, slo=self.slo_texts))
        result.wire_source = self.wire_source
        result.server_impl, result.client_engine = impl, client_engine(cell)
        result.tls = self.s.uses_tls(cell.label)
        result.tls_version_used = ("1.3" if cell.kind == "h3" else target.tls_version
                                   if result.tls else None)
        if point.link is not None:
            result.link = point.link.describe()
        jobs = self._jobs(point, target, model)
        total = sum(j.requests for j in jobs) if self.s.load.requests else None
        task = self.progress.start(point, total)
        pool = self.cluster       # Ray actors (scenario cluster:), else local processes
        procs = [] if pool else [self._spawn(job) for job in jobs]
        logging, packets, failure, watch = False, None, None, None
        try:
            if pool:
                pool.warm(jobs)
            else:
                self._events(procs, Warm, server=srv)
            cpu0 = processes_cpu_s(srv.pids) if srv else self._remote_cpu(cell, target)
            threads0, window0 = Snapshot.take(srv.pids if srv else []), time.monotonic()
            if point.link is not None:
                self._set_link(point.link)
                self.topology.emulator_stats(reset=True)   # lateness of this point only
                self.topology.log_start()
                logging = True
                if srv is not None and self._token_stream(point.protocol):
                    watch = SenderWatch.started(self.out, f"{key.file_label}-r{point.repeat + 1}",
                                                cell, srv.port, self.topology.wrap("server"))
            wire0 = self.topology.counters() if self.topology else None   # with the log
            for p in procs:                      # all workers start together
                p.stdin.write(b"go\n")
                p.stdin.flush()
            try:
                update = lambda d: self.progress.update(task, d)   # noqa: E731
                results = (pool.measure(jobs, update) if pool else
                           self._events(procs, Result, update, server=srv))
            except PointFailed as exc:
                if not exc.results:
                    raise
                results, failure = exc.results, exc     # keep what the survivors measured
            cpu1 = processes_cpu_s(srv.pids) if srv else self._remote_cpu(cell, target)
            result.add_window(threads0, Snapshot.take(srv.pids if srv else []),
                              time.monotonic() - window0)
            wire = self.topology.counters() - wire0 if wire0 is not None else None
            if logging:      # the log is the ground truth for this point's wire bytes
                logging = False
                # Read before log_stop: forwarding pauses while the log is written.
                result.add_emulator(self.topology.emulator_stats())
                packets = self._save_packet_log(key, point.repeat, result)
            if wire is not None:
                if packets is None:
                    result.add_wire(*wire.ip_bytes(), wire.tx_packets, wire.rx_packets)
                else:            # kept beside the log's figures, as a cross-check
                    window = self.topology.log_counters or wire   # same window as the log
                    result.add_counter_check(*window.ip_bytes())
        finally:
            if logging:      # keep what the link saw even when the point failed
                self._save_packet_log(key, point.repeat, result)
            if watch is not None:
                watch.stop()
            self._reap(procs)
        rec = Recorder()
        for r in results:
            rec.merge(Recorder.from_json(r.recorder))
        if rec.traces is not None:
            self._save_traces(rec, key, point, packets, result, watch)
        if wire0 is None and self.s.target is None and cell.kind != "grpc":
            # No namespace: the workers' socket-level counts, labeled as estimates.
            result.wire_source = SOCKET_SOURCE
            for r in results:
                w = r.socket_wire
                if w["up"] or w["down"]:     # nothing counted (libcurl's QUIC): unknown, not 0
                    result.add_wire(w["up"], w["down"], w["up_packets"], w["down_packets"])
        if failure is not None:
            result.drop_shared_counts("a worker failed mid-point, and the link and the server "
                                      "also carried requests that no survivor counted")
        wall = max(r.wall_s for r in results)
        util = max(r.client_cpu_s / r.wall_s for r in results if r.wall_s)
        path = next((r.client_path for r in results
                     if str(r.client_path or "").startswith("blocking")), None)
        if path and path not in result.client_engine:   # one user: no asyncio per request
            result.client_engine += f" ({path})"
        server_cpu = (cpu1 - cpu0 if cpu0 is not None and cpu1 is not None and failure is None
                      else None)
        result.add_repeat(rec, wall, sum(r.client_cpu_s for r in results), server_cpu, util)
        self.progress.finish(task, result)
        if failure is not None:
            result.failures.append(f"partial: {len(results)} of {len(jobs)} workers "
                                   f"reported; {failure}")
            raise failure

    def _save_packet_log(self, key: PointKey, repeat: int, result: PointResult) -> Path | None:
        """The link's per-packet log of this point (ground truth), kept with the results."""
        path = self.out / "packets" / f"{key.file_label}-r{repeat + 1}.csv.gz"
        path.parent.mkdir(exist_ok=True)
        if not self.topology.log_stop(path):
            return None                # this backend keeps no log: counters it is
        result.files.setdefault("packets", [])
        result.files["packets"].append(str(path.relative_to(self.out)))
        up = down = up_packets = down_packets = 0
        for rec in read_packet_log(path):    # sent bytes, whether the link lost them or not
            if rec.direction == "up":
                up, up_packets = up + rec.size, up_packets + 1
            else:
                down, down_packets = down + rec.size, down_packets + 1
        result.add_wire(up, down, up_packets, down_packets)
        result.wire_source = LOG_SOURCE
        return path

    def _save_traces(self, rec: Recorder, key: PointKey, point: PlanPoint,
                     packets: Path | None, result: PointResult,
                     watch: SenderWatch | None) -> None:
        traces = [StreamTrace(stream=i, **t) for i, t in enumerate(rec.traces)]
        rec.traces = None      # not kept in memory: a long run has millions of tokens
        record_hol(self.out, f"{key.file_label}-r{point.repeat + 1}", traces, packets,
                   self.s.workload_for(point.protocol).itl_ms or 0.0, point.link, result,
                   watch)

    def _reap(self, procs: list[subprocess.Popen]) -> None:
        for p in procs:
            if p.poll() is None:
                try:
                    p.stdin.close()          # EOF instead of "go": the worker leaves
                except OSError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    reap(p)
            for f in (p.stdout, p.errfile):
                f.close()
            self.workers.remove(p)

    # ------------------------------------------------------------ whole run

    def _point_failed(self, point: PlanPoint, exc: PointFailed) -> None:
        """Record the failure on its row (created if nothing was measured) and go on; a
        dead server is dropped so the next point that needs it starts a fresh one."""
        key = self._key(point)
        result = self.points.setdefault(key.label, PointResult(key, slo=self.slo_texts))
        if not any(str(exc) in f for f in result.failures):
            result.failures.append(str(exc))
        self.failures.append(f"{key.label} (repeat {point.repeat + 1}): {exc}")
        self.servers.drop_dead()
        self.progress.failed(point, str(exc))

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for p in self.points.values():
            r = p.row(self.s.workload_for(p.key.protocol).type)
            r["group"] = group_of(self.s.groups, r["cell"])
            if p.key.label in self.sweep_probes:
                r["sweep_probe"] = True
            if (self.cluster and self.cluster.foreign_hosts) or off_host(self.s.remote):
                r["owd_p50_ms"] = r["owd_p99_ms"] = None     # not on the servers' clock
            rows.append(r)
        return rows

    def save(self) -> None:
        if self.cluster and self.cluster.info:
            self.writer.meta["cluster"] = self.cluster.meta()
        self.writer.write(self.rows(), self.status, list(self.points.values()),
                          self.s.outputs.hgrm)

    def run(self) -> list[dict[str, Any]]:
        # SIGINT gets a handler too: a run started in the background by a shell inherits
        # SIGINT ignored, and Python would then never raise KeyboardInterrupt.
        old = {sig: signal.signal(sig, _raise_interrupted)
               for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._setup_network()
            if self.cluster:
                self.cluster.start()
            plan = expand_plan(self.s)
            self.progress.plan(len(plan), self.out)
            for point in plan:
                if point.load_kind == "sweep":
                    run_sweep(self, point)   # its probes are saved as they finish
                else:
                    try:
                        self.run_point(point)
                    except PointFailed as exc:
                        self._point_failed(point, exc)
                    self.save()
                self.progress.point_done()
            self.status = "complete"
        except (KeyboardInterrupt, Interrupted):
            self.status = "aborted"
            raise Interrupted("interrupted") from None
        except BaseException as exc:
            self.status = "failed"
            self.writer.meta["failure"] = first_line(exc)   # kept past the terminal's line
            raise
        finally:
            # A second Ctrl-C / SIGTERM must not cut the bounded cleanup short (servers
            # left behind, no final summary.json): further signals wait until it is done.
            for sig in old:
                signal.signal(sig, signal.SIG_IGN)
            try:
                for p in list(self.workers):
                    p.kill()
                    reap(p)
                    for f in (p.stdout, p.errfile):
                        f.close()
                self.workers.clear()
                self.servers.stop_all()
                if self.cluster:
                    self.cluster.stop()
                if self.topology is not None:
                    self.topology.close()
                self.save()
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)
        return self.rows()


class ProgressSink:
    """What the runner tells the user while it works (harness.report.console implements it)."""
    def plan(self, points: int, out: Path) -> None: ...
    def start(self, point: PlanPoint, total: int | None) -> Any: ...
    def update(self, task: Any, done: int) -> None: ...
    def finish(self, task: Any, result: PointResult) -> None: ...
    def failed(self, point: PlanPoint, message: str) -> None: ...
    def point_done(self) -> None: ...      # a plan point ended (a sweep: all its probes)
    def warning(self, message: str) -> None: ...
    def note(self, message: str) -> None: ...
