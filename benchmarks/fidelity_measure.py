"""CPUs for benchmarks/fidelity.py: pinning the server and the clients, the CPU window
around each measured run, and Run, one tool's measurement."""

from __future__ import annotations

import os
import resource
import shutil
from dataclasses import dataclass, field
from typing import Any

from base.lifetime import pdeathsig_prefix
from harness.measure.cpu import processes_cpu_s, steal_share
from servers.launcher import ServerProcess


@dataclass
class Pinning:
    server: int | None = None
    client: int | None = None

    @classmethod
    def choose(cls, enabled: bool) -> "Pinning":
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if not enabled or len(cpus) < 2:
            return cls()
        return cls(server=cpus[0], client=cpus[1])

    def pin_server(self, server: ServerProcess) -> None:
        """Every thread of every server process onto the server CPU."""
        if self.server is not None:
            for pid in server.pids:
                pin_process(pid, self.server)

    def client_prefix(self) -> list[str]:
        """Command prefix for a native client: its CPU, and death with this process.

        Not preexec_fn: the project forbids it (base/lifetime.py says why).
        """
        prefix = pdeathsig_prefix() if shutil.which("setpriv") else []
        if self.client is not None and shutil.which("taskset"):
            prefix += ["taskset", "-c", str(self.client)]
        return prefix


def pin_process(pid: int, cpu: int) -> None:
    """Every current thread of `pid` onto `cpu`; threads it starts later inherit it."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except OSError:
            pass            # a thread that ended meanwhile


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _proc_stat() -> dict[str, tuple[int, int, int, int]]:
    """Clock ticks per CPU ("cpu" = all) from /proc/stat: (processes, busy, total, steal).

    processes = user + nice + system (time charged to some process); busy adds irq,
    softirq (much of the loopback's packet work) and steal (time the hypervisor ran
    another guest instead of this CPU).
    """
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                name, *vals = line.split()
                t = [int(v) for v in vals[:8]]  # user nice system idle iowait irq softirq steal
                out[name] = (t[0] + t[1] + t[2], sum(t) - t[3] - t[4], sum(t), t[7])
    except OSError:
        pass
    return out


class Window:
    """Server CPU and every CPU's business over one measured interval.

    The machine is shared: other processes' load on the client's or the server's CPU
    shows up as core business above what our own processes used.
    """

    def __init__(self, server: ServerProcess, pin: Pinning) -> None:
        self.server, self.pin = server, pin

    def start(self) -> None:
        self.s0, self.p0 = processes_cpu_s(self.server.pids), _proc_stat()

    def stop(self) -> None:
        self.s1, self.p1 = processes_cpu_s(self.server.pids), _proc_stat()

    def _busy(self, cpu: int | None, what: int = 1) -> float | None:
        """Fraction of one CPU (or cores, for the whole machine) that was busy."""
        key = "cpu" if cpu is None else f"cpu{cpu}"
        if key not in self.p0 or key not in self.p1:
            return None
        busy = self.p1[key][what] - self.p0[key][what]
        total = self.p1[key][2] - self.p0[key][2]
        if not total:
            return None
        return busy / total * (1 if cpu is not None else len(self.p1) - 1)

    def fields(self, n: int, wall: float) -> dict[str, Any]:
        client, server = self.pin.client, self.pin.server
        return {"server_cpu_us_per_req": per_request(self.s0, self.s1, n),
                "server_util": utilisation(self.s0, self.s1, wall),
                # every process, irq and softirq included: was the core full?
                "client_core_busy_all": self._busy(client) if client is not None else None,
                "server_core_busy_all": self._busy(server) if server is not None else None,
                # process time only (user + system of any process): who else ran there?
                "client_core_processes": self._busy(client, 0) if client is not None
                else None,
                "machine_cores_busy": self._busy(None),
                # the hypervisor's share of the pinned CPUs (of all, unpinned)
                "steal": self._steal([c for c in (client, server) if c is not None])}

    def _steal(self, cpus: list[int]) -> float | None:
        keys = [f"cpu{c}" for c in cpus] or ["cpu"]
        if not all(k in self.p0 and k in self.p1 for k in keys):
            return None
        return steal_share(*((sum(t[k][3] for k in keys), sum(t[k][2] for k in keys))
                             for t in (self.p0, self.p1)))


@dataclass
class Run:
    """One measurement by one tool."""

    tool: str
    rps: float
    p50_ms: float
    requests: int
    wall_s: float
    errors: int
    client_cpu_us_per_req: float | None
    client_util: float | None          # client CPU seconds / wall seconds
    server_cpu_us_per_req: float | None
    server_util: float | None
    client_core_busy_all: float | None     # the client CPU's business, every process
    server_core_busy_all: float | None
    client_core_processes: float | None    # the same, process time only
    machine_cores_busy: float | None
    steal: float | None                    # the hypervisor's share of the CPUs (0..1)
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[k])


def per_request(c0: float | None, c1: float | None, n: int) -> float | None:
    return (c1 - c0) / n * 1e6 if c0 is not None and c1 is not None and n else None


def utilisation(c0: float | None, c1: float | None, wall: float) -> float | None:
    return (c1 - c0) / wall if c0 is not None and c1 is not None and wall else None
