"""CPU time of another process (all its threads), in seconds, from /proc.

/proc/<pid>/task/*/schedstat counts nanoseconds on CPU per thread; /proc/<pid>/stat's
tick counters are 10 ms coarse, too coarse for short load points.
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
