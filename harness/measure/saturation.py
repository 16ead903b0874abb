"""Was a row's server or client saturated? Then it measures a library, not a protocol.

Utilisation is CPU time over the measured window (warmup excluded), per process and per
thread, from /proc/<pid>/task/*/schedstat (harness.measure.cpu). Rules, in one place:

- A process is **bound** when its busiest thread used >= BUSY_THREAD of one core (an
  event loop, or grpc-core's or Go's busiest thread, can go no faster), or when the
  process as a whole used >= BUSY_PROCESS of the cores it may run on (a multi-threaded
  server such as Caddy or grpc-core spread over every core).
- A client worker is bound when it used >= BUSY_THREAD of a core (a worker is one event
  loop or one blocking loop; its process time covers every thread), or when its
  requests started late *systematically*: at least LATE_MIN and more than LATE_SHARE of
  them (one late start in 60 is a scheduling hiccup, not a saturated client).
- A point is **machine-bound** when the client workers and the server processes
  together used >= BUSY_MACHINE of the machine's cores: client and server share the
  machine here, so its req/s is then the cores divided by everyone's CPU per request,
  the load generator's included (on a real deployment it runs elsewhere), though no
  single process is at its limit.

Apart from the flags, a caveat: a point is **host-noisy** when the hypervisor took
>= STEAL_NOISY of the CPUs' time over its window (steal, /proc/stat). Every process here
then ran slower than its own CPU time says, by an amount that changes from second to
second, so the point's latency and rate are inflated by other guests of the host, not by
anything in the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.measure.cpu import host_ticks, threads_cpu_s

BUSY_THREAD = 0.85       # of one core
BUSY_PROCESS = 0.85      # of the cores the process may use
BUSY_MACHINE = 0.85      # of the machine's cores, client workers and servers together
NEAR_BUSY = 0.75         # of one core: not flagged, but its library may already shape the row
LATE_MIN = 3
LATE_SHARE = 0.05
EMULATOR_LATE_MIN = 3       # the lab's link emulator: packets released over 0.5 ms late,
EMULATOR_LATE_SHARE = 0.01  # at least this many and over this share of the packets
STEAL_NOISY = 0.05       # of the CPUs' time taken by the hypervisor over a window
MACHINE_CORES = len(os.sched_getaffinity(0))    # the cores this run's processes share

RULES = (f"server-bound / client-bound: a process whose busiest thread used >= "
         f"{BUSY_THREAD:.0%} of one core, or which used >= {BUSY_PROCESS:.0%} of the cores "
         f"it may run on, over the measured window; a client worker also when at least "
         f"{LATE_MIN} and over {LATE_SHARE:.0%} of its requests started late, or (network "
         f"lab) when the link emulator released at least {EMULATOR_LATE_MIN} and over "
         f"{EMULATOR_LATE_SHARE:.0%} of the packets over 0.5 ms late; "
         f"machine-bound: the client workers and the server processes together used >= "
         f"{BUSY_MACHINE:.0%} of the machine's cores; near saturation (a caveat, not a "
         f"flag): a busiest thread or client worker at >= {NEAR_BUSY:.0%} of a core")

# Each saturation flag: (terminal table's short form, report's word, row key). A row
# carrying any of them measures a library or this machine, not a protocol.
FLAGS = (("SRV", "server-bound", "server_bound"), ("CLI", "client-bound", "client_bound"),
         ("CPU", "machine-bound", "machine_bound"))


def is_bound(row: dict) -> bool:
    """Whether a result row carries any saturation flag."""
    return any(row.get(key) for _, _, key in FLAGS)


def bound_words(row: dict) -> str:
    """The row's saturation flags as the report spells them ("server-bound ..."), or ""."""
    return " ".join(word for _, word, key in FLAGS if row.get(key))


def near_busy(row: dict) -> str:
    """Which of a row's processes came within reach of saturation (its busiest thread at
    >= NEAR_BUSY of a core) without being flagged: "" for none. A figure from such a row
    may already be mostly its library's CPU (at one user, most of each round trip)."""
    busy = [(u.get("busiest_thread", 0), f"{name} (server)")
            for name, u in (row.get("server_core_util") or {}).items()]
    busy.append((row.get("client_core_util") or 0, "the client worker"))
    return ", ".join(f"{who} {util:.0%} of a core" for util, who in sorted(busy, reverse=True)
                     if util >= NEAR_BUSY)


@dataclass(frozen=True)
class Snapshot:
    """Per-thread CPU seconds of some processes at one instant, and the host's ticks."""
    threads: dict[int, dict[int, float]]      # pid -> tid -> seconds
    host: tuple[int, int] | None = None       # (steal, total) ticks: cpu.host_ticks

    @classmethod
    def take(cls, pids: list[int]) -> "Snapshot":
        return cls({pid: threads_cpu_s(pid) for pid in pids}, host_ticks())


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f"{f.read().strip()}[{pid}]"
    except OSError:
        return f"pid {pid}"


def _cores(pid: int) -> int:
    try:
        return len(os.sched_getaffinity(pid))
    except OSError:
        return os.cpu_count() or 1


def utilisation(before: Snapshot, after: Snapshot, wall_s: float) -> dict[str, dict[str, float]]:
    """{process label: {"process": cores used, "busiest_thread": share of one core,
    "cores": cores it may use}} over the window between the snapshots."""
    out = {}
    if wall_s <= 0:
        return out
    for pid, t1 in after.threads.items():
        t0 = before.threads.get(pid, {})
        deltas = [t1[tid] - t0.get(tid, 0.0) for tid in t1]
        if not deltas:
            continue
        out[_name(pid)] = {"process": round(sum(deltas) / wall_s, 3),
                           "busiest_thread": round(max(deltas) / wall_s, 3),
                           "cores": _cores(pid)}
    return out


def server_bound(util: dict[str, dict[str, float]]) -> str:
    """Why the server was saturated ('' if it was not)."""
    reasons = []
    for name, u in util.items():
        if u["busiest_thread"] >= BUSY_THREAD:
            reasons.append(f"{name}'s busiest thread used {u['busiest_thread']:.0%} of a core")
        elif u["process"] >= BUSY_PROCESS * u["cores"]:
            reasons.append(f"{name} used {u['process']:.2f} of its {u['cores']} cores")
    return "; ".join(reasons)


def client_bound(core_util: float, late_starts: int, n: int) -> str:
    """Why a client worker limited the point ('' if it did not)."""
    reasons = []
    if core_util >= BUSY_THREAD:
        reasons.append(f"a client worker used {core_util:.0%} of a core")
    if late_starts >= LATE_MIN and late_starts > LATE_SHARE * n:
        reasons.append(f"{late_starts} of {n} requests started late")
    return "; ".join(reasons)


def emulator_late(late: int, packets: int) -> bool:
    """Whether the lab's link emulator, not the link settings, shaped the point: a
    systematic share of packets released over 0.5 ms late, not one or two (a busy host
    for a moment, a fraction of a percent of a round trip)."""
    return late >= EMULATOR_LATE_MIN and late > EMULATOR_LATE_SHARE * max(1, packets)


def machine_bound(cores_used: float, cores: int = MACHINE_CORES) -> str:
    """Why the machine's CPU limited the point ('' if it did not): `cores_used` is what
    the client workers and the server processes used together over the window."""
    if cores_used >= BUSY_MACHINE * cores:
        return (f"client and server processes together used {cores_used:.2f} of the "
                f"machine's {cores} cores")
    return ""


def host_noisy(steal: float | None) -> str:
    """Why the host, not the run, may have shaped the point ('' if it did not)."""
    if steal is not None and steal >= STEAL_NOISY:
        return (f"steal: the hypervisor took {steal:.0%} of this machine's CPU time during a "
                f"measured window")
    return ""


def merge_max(into: dict[str, dict[str, float]], new: dict[str, dict[str, float]]) -> None:
    """Across repeats keep each process's highest utilisation (the repeat nearest saturation).
    A restarted server gets new pids; its labels then stand beside the old ones."""
    for name, u in new.items():
        old = into.get(name)
        into[name] = u if old is None else {k: max(old[k], u[k]) for k in u}
