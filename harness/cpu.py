"""CPU time of another process (all its threads), in seconds, from /proc.

/proc/<pid>/task/*/schedstat counts nanoseconds on CPU per thread; /proc/<pid>/stat's
tick counters are 10 ms coarse, too coarse for short load points.
"""

from __future__ import annotations

import os


def process_cpu_s(pid: int) -> float | None:
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue            # a thread that ended between listdir and open
    return total / 1e9
