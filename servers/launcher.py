"""Start and stop server processes, each in its own process, with a readiness check.

    with start_server("h1") as srv:          # srv.port is the real port
        ...

A server is ready when it prints `WIREBENCH-READY {...}` (after binding). Servers die
with the process that launched them even if it is SIGKILLed (base.lifetime);
`stop()` sends SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base.paths import PACKAGE_ROOT
from base.errors import RunFailed
from servers.__main__ import READY_PREFIX
from base.lifetime import child_env, reap



class ServerStartError(RunFailed):
    pass


@dataclass
class ServerProcess:
    kind: str
    proc: subprocess.Popen
    info: dict[str, Any]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """Every process whose CPU is the server's (granian adds its worker)."""
        return list(self.info.get("pids") or [self.proc.pid])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stopped(self) -> list[int]:
        """PIDs of this server that are stopped (SIGSTOP, a debugger): alive, serving nothing."""
        out = []
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                        out.append(pid)
            except (OSError, IndexError):
                continue
        return out

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 5.0) -> None:
        self.ask_to_stop()
        self.finish_stop(time.monotonic() + grace_s)

    def ask_to_stop(self) -> None:
        """SIGTERM, without waiting: the server shuts down gracefully meanwhile."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def finish_stop(self, deadline: float) -> None:
        """Wait for the exit until `deadline` (time.monotonic()), then SIGKILL; clean up."""
        if self.proc.poll() is None:
            try:
                self.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                reap(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        try:
            self.log_path.unlink()
        except OSError:
            pass

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_command(kind: str, *, host: str = "127.0.0.1", port: int = 0,
                   api_key: str | None = None, extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "servers", kind, "--host", host, "--port", str(port)]
    if api_key is not None:
        cmd += ["--api-key", api_key]
    return cmd + list(extra or [])


def start_server(kind: str, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = None, extra: list[str] | None = None,
                 timeout_s: float = 30.0, env: dict[str, str] | None = None,
                 wrap: list[str] | None = None) -> ServerProcess:
    """Start `python -m servers KIND` and wait until it reports ready.

    `wrap` prefixes the command (e.g. `ip netns exec NS`); `extra` adds CLI flags.
    Raises ServerStartError with the server's own stderr if it dies or times out.
    """
    cmd = (wrap or []) + server_command(kind, host=host, port=port, api_key=api_key,
                                        extra=extra)
    log = tempfile.NamedTemporaryFile(prefix=f"wirebench-{kind}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=PACKAGE_ROOT, stdout=subprocess.PIPE, stderr=log,
                            stdin=subprocess.DEVNULL,
                            env=child_env({**(env or {}), "PYTHONUNBUFFERED": "1"}))
    log.close()
    server = ServerProcess(kind, proc, {}, Path(log.name), cmd)
    try:
        server.info = _wait_ready(proc, timeout_s, kind)
    except BaseException as exc:
        tail = server.log_tail()
        server.stop(grace_s=1.0)
        if isinstance(exc, ServerStartError):
            raise ServerStartError(f"{exc}\n--- server stderr ---\n{tail}") from None
        raise
    return server


def _wait_ready(proc: subprocess.Popen, timeout_s: float, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerStartError(f"{kind} server did not become ready in {timeout_s:.0f} s")
            if not sel.select(min(left, 0.2)):
                if proc.poll() is not None:
                    raise ServerStartError(f"{kind} server exited with code {proc.returncode} "
                                           "before it was ready")
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                proc.wait(2)
                raise ServerStartError(f"{kind} server exited with code {proc.returncode} "
                                       "before it was ready")
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if line.startswith(READY_PREFIX):
                    return json.loads(line[len(READY_PREFIX):])
    finally:
        sel.close()


class ServerGroup:
    """Several servers started together and all stopped together, whatever happens."""

    def __init__(self) -> None:
        self.servers: dict[tuple, ServerProcess] = {}

    def start(self, kind: str, **kwargs: Any) -> ServerProcess:
        """The running server of this kind and these options, started if need be."""
        key = (kind, repr(sorted(kwargs.items())))
        if key in self.servers and not self.servers[key].alive():
            self.servers.pop(key).stop()     # it died: a fresh one for this cell
        if key not in self.servers:
            self.servers[key] = start_server(kind, **kwargs)
        return self.servers[key]

    def drop_dead(self) -> None:
        """Forget servers that exited or are stopped (those are killed), so the next
        start() of their kind starts anew."""
        for key, server in list(self.servers.items()):
            if not server.alive() or server.stopped():
                for pid in server.stopped():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                server.stop()
                del self.servers[key]

    def stop_all(self, grace_s: float = 5.0) -> None:
        # All signalled first, so their graceful shutdowns (hypercorn's QUIC one takes
        # its 1 s graceful_timeout) overlap instead of adding up.
        for server in self.servers.values():
            server.ask_to_stop()
        deadline = time.monotonic() + grace_s
        for server in self.servers.values():
            server.finish_stop(deadline)
        self.servers.clear()

    def __enter__(self) -> "ServerGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
