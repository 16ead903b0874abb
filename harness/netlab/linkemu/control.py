"""The parent's side of the emulator: start `python -m harness.netlab.linkemu`, talk JSON lines.

The emulator is started under `setpriv --pdeathsig KILL`, so it dies with the process
that started it (even a SIGKILLed one), and its TUN devices with it. Its stderr goes to
a temporary file, read back only to explain a failure (a pipe nobody reads could fill
up and stall the forwarding loop).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from base.paths import PACKAGE_ROOT
from base.errors import RunFailed
from base.lifetime import pdeathsig_prefix, reap



class EmulatorError(RunFailed):
    pass


class EmulatorProcess:
    def __init__(self, client_ns: str, server_ns: str, *, env: dict[str, str] | None = None,
                 client_dev: str = "wbc0", server_dev: str = "wbs0",
                 client_ip: str = "169.254.77.1", server_ip: str = "169.254.77.2",
                 prefix: int = 30, mtu: int = 1500, rt_priority: int | None = None,
                 spin_us: float | None = None, timeout_s: float = 15.0) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._err = tempfile.TemporaryFile()
        cmd = pdeathsig_prefix() + [
            sys.executable, "-m", "harness.netlab.linkemu", "--client-ns", client_ns,
            "--server-ns", server_ns, "--client-dev", client_dev, "--server-dev", server_dev,
            "--client-ip", client_ip, "--server-ip", server_ip, "--prefix", str(prefix),
            "--mtu", str(mtu), "--rt-priority", str(rt_priority or 0)]
        if spin_us is not None:
            cmd += ["--spin-us", str(spin_us)]
        env = dict(env if env is not None else os.environ)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, cwd=PACKAGE_ROOT, env=env,
                                     start_new_session=True)
        self.ready = self._read_line(timeout_s)
        if not self.ready.get("ready"):
            self.close()
            raise EmulatorError(f"link emulator failed to start: {self.ready.get('error')}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, cmd: str, timeout_s: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Send one command, wait for its reply; raise EmulatorError if it failed."""
        with self._lock:
            if self.proc.poll() is not None:
                raise EmulatorError(f"link emulator exited ({self.proc.returncode}): "
                                    f"{self.stderr()}")
            self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
            self.proc.stdin.flush()
            reply = self._read_line(timeout_s)
        if not reply.get("ok"):
            raise EmulatorError(f"link emulator refused {cmd}: {reply.get('error')}")
        return reply

    def _read_line(self, timeout_s: float) -> dict[str, Any]:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise EmulatorError(f"link emulator did not answer in {timeout_s:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                reap(self.proc)
                return {"ok": False, "ready": False,
                        "error": f"exited with {self.proc.returncode}: {self.stderr()}"}
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace").strip()[-2000:]

    def close(self, timeout_s: float = 3.0) -> None:
        """Closing stdin ends it; kill it if it does not go in time."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                reap(self.proc)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._err.close()
