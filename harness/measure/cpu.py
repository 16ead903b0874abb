"""CPU time of another process (all its threads), in seconds, from /proc; and the time
the hypervisor took from this machine's CPUs (steal).

/proc/<pid>/task/*/schedstat counts nanoseconds on CPU per thread; /proc/<pid>/stat's
tick counters are 10 ms coarse, too coarse for short load points. Steal is only counted
in /proc/stat's ticks; over a load point of seconds that is hundreds of them per CPU.
"""

from __future__ import annotations

import os


def processes_cpu_s(pids: list[int]) -> float | None:
    """Summed over a server's processes (granian serves from a forked worker)."""
    total = 0.0
    for pid in pids:
        cpu = process_cpu_s(pid)
        if cpu is None:
            return None          # one has exited: a partial sum would be wrong
        total += cpu
    return total


def process_cpu_s(pid: int) -> float | None:
    """All threads of a process; None once it has exited."""
    threads = threads_cpu_s(pid)
    return sum(threads.values()) if threads else None


def threads_cpu_s(pid: int) -> dict[int, float]:
    """Per thread of a process: {tid: CPU seconds}; empty when the process is gone."""
    out: dict[int, float] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue            # a thread that ended between listdir and open
    return out


def host_ticks(cpus: set[int] | None = None) -> tuple[int, int] | None:
    """(steal, total) clock ticks so far, summed over `cpus` (default: the CPUs this
    process may run on), from /proc/stat; None where there is no such file. Steal is
    time a virtual CPU of this machine had work but the hypervisor ran another guest."""
    try:
        with open("/proc/stat") as f:
            text = f.read()
    except OSError:
        return None
    return parse_host_ticks(text, os.sched_getaffinity(0) if cpus is None else cpus)


def parse_host_ticks(text: str, cpus: set[int]) -> tuple[int, int] | None:
    """/proc/stat's per-CPU lines: user nice system idle iowait irq softirq steal [guest
    guest_nice]. Guest time is already inside user and nice, so the total is the first
    eight. None when no line of `cpus` is there (or a kernel too old to count steal)."""
    steal = total = 0
    found = False
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        ticks = [int(v) for v in rest.split()[:8]]
        if len(ticks) < 8:
            return None
        steal, total, found = steal + ticks[7], total + sum(ticks), True
    return (steal, total) if found else None


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the CPUs' time the hypervisor took between two host_ticks (0..1)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])
