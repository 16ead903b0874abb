"""Cleanup never hangs on a child it killed, even when a signal handler's exception left
that Popen's internal waitpid lock held (Ctrl-C inside Popen.wait: seen hanging a lab
run's cleanup forever)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from base.lifetime import reap
from tests.processes import gone


def test_reap_returns_and_reaps_even_with_the_popen_lock_held():
    proc = subprocess.Popen(["sleep", "30"])
    proc.kill()
    # What an exception raised between the lock's acquire and its `with` block leaves
    # (a private attribute, touched here on purpose: it is the state being guarded).
    proc._waitpid_lock.acquire()
    t0 = time.monotonic()
    reap(proc, timeout_s=0.3)
    assert time.monotonic() - t0 < 3
    assert gone(proc.pid, timeout_s=1)
    with pytest.raises(ChildProcessError):  # reaped: no zombie of ours is left
        os.waitpid(proc.pid, os.WNOHANG)


def test_reap_of_a_process_that_exits_is_a_plain_wait():
    proc = subprocess.Popen(["true"])
    reap(proc)
    assert proc.returncode == 0
