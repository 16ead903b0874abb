"""Saturation from the real /proc counters of a real busy thread (the pure rules are
tests/unit/test_saturation.py)."""

import os
import threading
import time

from harness.measure.saturation import Snapshot, utilisation


def test_utilisation_of_a_real_busy_thread():
    done = threading.Event()

    def spin():
        while not done.is_set():
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    before, t0 = Snapshot.take([os.getpid()]), time.monotonic()
    time.sleep(0.3)
    # Snapshot while the thread lives: an ended thread leaves /proc/<pid>/task.
    after, wall = Snapshot.take([os.getpid()]), time.monotonic() - t0
    done.set()
    worker.join()
    (label, figures), = utilisation(before, after, wall).items()
    assert label.endswith(f"[{os.getpid()}]")
    # The spinning thread carries the process (the main thread sleeps); on a shared
    # machine it gets what the scheduler gives it, so only a loose floor.
    assert figures["busiest_thread"] > 0.3
    assert figures["busiest_thread"] >= 0.8 * figures["process"]


def test_the_host_s_ticks_advance_with_the_clock_on_every_cpu_this_run_may_use():
    """/proc/stat's ticks of this process's CPUs grow by about wall x USER_HZ x CPUs (a
    tick that idles counts too), and steal is a part of them."""
    before, t0 = Snapshot.take([]), time.monotonic()
    time.sleep(0.5)
    after, wall = Snapshot.take([]), time.monotonic() - t0
    assert before.host is not None and after.host is not None
    ticks = after.host[1] - before.host[1]
    expected = wall * os.sysconf("SC_CLK_TCK") * len(os.sched_getaffinity(0))
    assert 0.6 * expected <= ticks <= 1.4 * expected
    assert 0 <= after.host[0] - before.host[0] <= ticks
