"""granian (Rust, hyper + tokio) serving the same ASGI app: kinds granian-h1, granian-h2.

A second implementation beside uvicorn (h1) and hypercorn (h2), so that a protocol's
cost and a library's cost can be told apart (ANCHORS.md: granian serves the bare ASGI
app over HTTP/2 TLS about 6x faster than hypercorn).

- granian-h1: cleartext HTTP/1.1 only (granian `http=1`).
- granian-h2: TLS with ALPN h2 and http/1.1 both offered, as hypercorn does (granian
  `http=auto`), so a client that falls back is caught by the client's own check, not
  hidden; the same certificate and key as hypercorn (opts.tls). With --h2c-port, also
  cleartext HTTP/2 with prior knowledge (h2c) on that port: granian's `auto` mode reads
  the connection preface and serves HTTP/2 on a cleartext socket (no `Upgrade: h2c`).

Processes. granian runs as it is deployed: a supervisor process (granian's MPServer)
and one worker process that it forks, which holds the Python event loop (uvloop) and
the Rust runtime (1 runtime thread). granian's supervisor must own the main thread of
its process (signals, blocking loop), so it cannot live inside this asyncio process:

    python -m servers granian-h2   (this process: binds, reports ready, forwards stop)
      └─ python -m servers.http.granian_server '{config}'   (granian supervisor, idle)
           └─ granian worker   (all request work: Rust I/O + the ASGI app)

granian-h2 with h2c runs two such pairs (one listener each; a granian server has one
TLS setting), each with its own App instance, so /health counts per listener. Every
PID of the tree is listed in the ready info as "pids"; the server's CPU is the sum of
their CPU (harness.measure.cpu.process_cpu_s over each), the worker carrying nearly all of it.

Sockets are bound here, before granian starts (port 0 works, the real port is known),
and handed down as inherited file descriptors; granian takes them through its socket
holder instead of binding its own.

The app. granian imports its target by module path in the worker; the target is the
factory `servers.http.granian_server:app_from_env`, which builds `App(limits, api_key)` from
one environment variable, WIREBENCH_GRANIAN_APP: JSON `{"limits": {Limits fields},
"api_key": str | null, "cors": [origins] | null}` (all optional; missing means the
defaults; "cors" wraps the app in servers.cors.Cors). This process sets
it for its children. The same factory works with stock granian, for cross-checks:

    WIREBENCH_GRANIAN_APP='{"limits": {"max_batch": 4}}' \\
        granian --interface asginl --factory --loop uvloop servers.http.granian_server:app_from_env

Settings: 1 worker, 1 Rust runtime thread, 1 blocking thread, uvloop, no access log, no
WebSocket, HTTP/1.1 keep-alive on with the longest header-read (idle) timeout granian
allows (60 s; uvicorn's keep-alive is 75 s), no per-connection request cap (granian has
none), HTTP/2 at most 100 concurrent streams per connection (hypercorn's default;
granian's own is 200). Body size, batch and token limits are enforced by the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from base.paths import PACKAGE_ROOT
from servers.core import Limits
from base.lifetime import PARENT_ENV, child_env, die_with_parent
from servers.options import ServerOptions

Ready = Callable[[dict], None]

APP_ENV = "WIREBENCH_GRANIAN_APP"            # JSON: {"limits": {...}, "api_key": ..., "cors": [...]}
_READY_FD_ENV = "WIREBENCH_GRANIAN_READY_FD"  # worker writes its PID here once loaded

MAX_CONCURRENT_STREAMS = 100                 # hypercorn's h2_max_concurrent_streams
HEADER_READ_TIMEOUT_MS = 60_000              # granian's maximum
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


# ---------------------------------------------------------------- the app factory

def app_from_env():
    """granian's target (`--factory servers.http.granian_server:app_from_env`): the App
    built from $WIREBENCH_GRANIAN_APP. Runs in the granian worker process."""
    from servers.http.asgi_app import App
    from servers.cors import wrap

    spec = json.loads(os.environ.get(APP_ENV) or "{}")
    limits = Limits(**spec.get("limits", {}))
    cors = spec.get("cors")
    app = wrap(App(limits, spec.get("api_key")), tuple(cors) if cors is not None else None)
    _worker_started()
    return app


def app_env(limits: Limits, api_key: str | None,
            cors: tuple[str, ...] | None = None) -> str:
    """The value of $WIREBENCH_GRANIAN_APP that makes app_from_env build App(limits, api_key)
    (inside servers.cors.Cors when `cors` lists origins)."""
    return json.dumps({"limits": dataclasses.asdict(limits), "api_key": api_key,
                       "cors": list(cors) if cors is not None else None})


def _worker_started() -> None:
    # Die with the supervisor even if it is SIGKILLed (granian's workers do not). SIGKILL:
    # until granian installs the worker's own handler, SIGTERM reaches the supervisor's
    # Python handler inherited through fork, which does nothing in a worker.
    die_with_parent(signal.SIGKILL)
    fd = os.environ.pop(_READY_FD_ENV, None)
    if fd is None:
        return

    def report() -> None:
        # Tell the serving process this worker's PID (the process whose CPU is the
        # server's) once the worker's loop runs: granian calls the factory before it
        # installs the worker's SIGTERM handler and starts serving, and runs the loop
        # after both; a stop sent before that would wait out the kill timeout.
        with contextlib.suppress(OSError):
            os.write(int(fd), b"%d\n" % os.getpid())
            os.close(int(fd))

    # granian made this process's loop current just before calling the factory.
    asyncio.get_event_loop_policy().get_event_loop().call_soon(report)


# ---------------------------------------------------------------- the serving process

async def serve(opts: ServerOptions, ready: Ready) -> None:
    from servers.http.http_server import bind

    if opts.kind not in ("granian-h1", "granian-h2"):
        raise ValueError(f"granian serves granian-h1 and granian-h2, not {opts.kind!r}")
    if opts.kind == "granian-h1" and opts.h2c_port is not None:
        raise ValueError("--h2c-port only applies to granian-h2")
    if opts.kind == "granian-h2" and opts.tls is None:
        raise ValueError("granian-h2 needs TLS files (opts.tls)")
    listeners: list[tuple[socket.socket, dict]] = []
    info: dict[str, Any] = {"server": "granian"}
    try:
        main = bind(opts.host, opts.port)
        if opts.kind == "granian-h1":
            listeners.append((main, {"http": "1"}))
            info.update(port=main.getsockname()[1], http="1.1")
        else:
            listeners.append((main, {"http": "auto", "cert": str(opts.tls.cert),
                                     "key": str(opts.tls.key),
                                     "tls_min": opts.tls_version}))
            info.update(port=main.getsockname()[1], http="2", tls=True)
            if opts.h2c_port is not None:
                h2c = bind(opts.host, opts.h2c_port)
                listeners.append((h2c, {"http": "auto"}))
                info["h2c_port"] = h2c.getsockname()[1]
        procs: list[_Granian] = []
        try:
            for sock, cfg in listeners:
                procs.append(_Granian.start(sock, cfg, opts))
            for sock, _ in listeners:
                sock.close()        # the granian processes hold their own copies
            for proc in procs:
                await proc.wait_ready(START_TIMEOUT_S)
            info["pids"] = [os.getpid()] + [pid for p in procs for pid in p.pids]
            ready(info)
            gone = await _first_exit(procs)
            raise RuntimeError(f"granian (PID {gone.proc.pid}) exited unexpectedly with "
                               f"code {gone.proc.returncode}")
        finally:
            await asyncio.shield(_stop_all(procs))
    finally:
        for sock, _ in listeners:
            sock.close()


async def _first_exit(procs: list["_Granian"]) -> "_Granian":
    while True:
        for p in procs:
            if p.proc.poll() is not None:
                return p
        await asyncio.sleep(0.2)


async def _stop_all(procs: list["_Granian"]) -> None:
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    while any(p.proc.poll() is None for p in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for p in procs:
        p.kill_all()
        p.close_pipe()


@dataclasses.dataclass
class _Granian:
    """One granian supervisor process (and, once ready, its worker)."""
    proc: subprocess.Popen
    ready_fd: int
    worker_pid: int | None = None

    @classmethod
    def start(cls, sock: socket.socket, cfg: dict, opts: ServerOptions) -> "_Granian":
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        config = {**cfg, "fd": sock.fileno(), "backlog": 1024, "host": opts.host}
        env = child_env({APP_ENV: app_env(opts.limits, opts.api_key, opts.cors_origins),
                         _READY_FD_ENV: str(wfd)})
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "servers.http.granian_server", json.dumps(config)],
                # granian logs to stdout: send it to our stderr, the server log (our
                # stdout carries only the ready line).
                cwd=PACKAGE_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=2,
                pass_fds=(sock.fileno(), wfd),
                start_new_session=True)   # its own group: a stop reaches the worker too
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        return cls(proc, rfd)

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] + ([self.worker_pid] if self.worker_pid else [])

    async def wait_ready(self, timeout_s: float) -> None:
        """Until the worker has loaded the app (its PID arrives on the pipe)."""
        deadline = time.monotonic() + timeout_s
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                try:
                    chunk = os.read(self.ready_fd, 64)
                except BlockingIOError:
                    chunk = None
                if chunk == b"" or self.proc.poll() is not None:
                    raise RuntimeError(f"granian exited with code {self.proc.poll()} "
                                       "before it was ready (its errors are above)")
                if chunk:
                    buf += chunk
                    continue
                if time.monotonic() > deadline:
                    raise RuntimeError(f"granian did not start in {timeout_s:.0f} s")
                await asyncio.sleep(0.01)
        finally:
            self.close_pipe()
        self.worker_pid = int(buf)

    def close_pipe(self) -> None:
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1

    def terminate(self) -> None:
        # The supervisor stops its worker itself (SIGTERM, then waits for it).
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill_all(self) -> None:
        # Whatever is left of the group after the grace period (a stuck worker too).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)


# ---------------------------------------------------------------- the granian supervisor

def _supervise(config: dict) -> None:
    """Run granian's own supervisor (MPServer) on an inherited listening socket."""
    from granian._granian import SocketHolder
    from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
    from granian.http import HTTP1Settings, HTTP2Settings
    from granian.log import LogLevels
    from granian.server import MPServer

    fd = int(config["fd"])
    tls = "cert" in config
    os.environ[PARENT_ENV] = str(os.getpid())    # for the worker's die_with_parent

    class Server(MPServer):
        def _init_shared_socket(self):
            # Serve the socket bound by wirebench instead of binding one (port 0 works).
            self._ssp = None
            self._shd = SocketHolder(fd, False, config["backlog"])
            self._sfd = fd
            self._sso = socket.socket(fileno=fd)
            self._sso.set_inheritable(True)

    server = Server(
        "servers.http.granian_server:app_from_env", factory=True,
        interface=Interfaces.ASGINL,          # lifespan off, as on uvicorn
        address=config["host"], port=0,       # for granian's log only: the socket is given
        workers=1, runtime_threads=1, runtime_blocking_threads=1, blocking_threads=1,
        loop=Loops.uvloop, http=HTTPModes(config["http"]), websockets=False,
        backlog=config["backlog"],
        http1_settings=HTTP1Settings(keep_alive=True,
                                     header_read_timeout=HEADER_READ_TIMEOUT_MS),
        http2_settings=HTTP2Settings(max_concurrent_streams=MAX_CONCURRENT_STREAMS),
        log_enabled=True, log_level=LogLevels.warning, log_access=False,
        ssl_cert=Path(config["cert"]) if tls else None,
        ssl_key=Path(config["key"]) if tls else None,
        ssl_protocol_min=(SSLProtocols.tls13 if config.get("tls_min") == "1.3"
                          else SSLProtocols.tls12),
        respawn_failed_workers=False,         # a crashed worker ends the server: visible
        workers_kill_timeout=3,
        process_name=None,
    )
    server.serve()


if __name__ == "__main__":
    import multiprocessing

    die_with_parent()                          # SIGTERM: granian stops its worker
    multiprocessing.set_start_method("fork")   # the worker inherits the socket's fd
    _supervise(json.loads(sys.argv[1]))
