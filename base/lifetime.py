"""Child processes die with the process that started them, even a SIGKILLed one.

PR_SET_PDEATHSIG does it, but it must not be set from `preexec_fn`: that forces a plain
fork which runs Python (and any atfork hooks, e.g. gRPC's, which aborted a child here)
before exec. So a Python child sets it on itself first thing (`die_with_parent`), and an
external command is started through `setpriv --pdeathsig` (`pdeathsig_prefix`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

PARENT_ENV = "WIREBENCH_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child that should call `die_with_parent`."""
    return {**os.environ, **(extra or {}), PARENT_ENV: str(os.getpid())}


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child started with `child_env`: get `sig` when the parent dies."""
    parent = os.environ.pop(PARENT_ENV, None)   # not inherited by our own children
    if parent is None:
        return
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != int(parent):             # it died before we could ask
        os.kill(os.getpid(), sig)


def pdeathsig_prefix(sig: str = "KILL") -> list[str]:
    """Command prefix that gives an external program the same fate."""
    return ["setpriv", "--pdeathsig", sig, "--"]


def reap(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Wait for a process that was killed (or told to stop), without ever hanging: a
    Popen whose wait() a signal handler's exception interrupted can keep CPython's
    internal waitpid lock held, and a plain wait() then blocks forever (seen: Ctrl-C in
    a lab run hung its cleanup). wait(timeout) only tries that lock; past it, waitpid
    reaps the child directly."""
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:
            pass
