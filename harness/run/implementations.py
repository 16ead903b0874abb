"""Which implementation serves and which engine drives each cell, with versions.

Results always name them: on this machine the spread between two libraries for one
protocol exceeds the spread between protocols (ANCHORS.md).
"""

from __future__ import annotations

from base.cells import CLIENTS, ENGINE_PROTOCOLS, SERVERS, Cell, make_cell
from harness.run.environment import package_version


def _v(name: str) -> str:
    return f"{name} {package_version(name) or '?'}"


_SERVER_NAMES = {
    ("uvicorn", "h1"): lambda: f"{_v('uvicorn')} + httptools",
    ("hypercorn", "h2"): lambda: _v("hypercorn"),
    ("hypercorn", "h3"): lambda: f"{_v('hypercorn')} + {_v('aioquic')}",
    ("granian", "h1"): lambda: _v("granian"),
    ("granian", "h2"): lambda: _v("granian"),
    ("grpc.aio", "grpc"): lambda: f"grpc.aio ({_v('grpcio')})",
    ("websockets", "ws"): lambda: _v("websockets"),
    **{("caddy", k): (lambda k=k: _native_name("caddy", k)) for k in ("h1", "h2", "h3")},
    **{("fastapi", k): (lambda k=k: _native_name("fastapi", k)) for k in ("h1", "h2", "h3")},
}


def _native_name(server: str, kind: str) -> str:
    """Caddy and FastAPI name their own stacks (front, hop and backend, with versions)."""
    from importlib import import_module
    return import_module(f"servers.http.{server}_server").implementation_name(kind)

_PYTHON_ENGINES = {
    "h1": lambda: f"wirebench h1 ({_v('httptools')})",
    "h2": lambda: f"wirebench h2 ({_v('h2')})",
    "h3": lambda: f"wirebench h3 ({_v('aioquic')})",
    "grpc": lambda: f"grpc.aio ({_v('grpcio')})",
    "ws": lambda: _v("websockets"),
}


def _curl() -> str:
    from clients.curl.engine import engine_version
    return engine_version()


def _browser() -> str:
    from clients.browser import engine_version
    return engine_version()


_OTHER_ENGINES = {"curl": _curl, "browser": _browser}


def server_impl(cell: Cell | str, external: str | None = None) -> str:
    cell = make_cell(cell) if isinstance(cell, str) else cell
    return external or _SERVER_NAMES[(cell.server, cell.kind)]()


def client_engine(cell: Cell | str) -> str:
    cell = make_cell(cell) if isinstance(cell, str) else cell
    other = _OTHER_ENGINES.get(cell.client)
    return other() if other is not None else _PYTHON_ENGINES[cell.kind]()


def alternatives(protocol: str) -> str:
    """'servers: a|b; clients: c|d' for --list-protocols."""
    kind = make_cell(protocol).kind
    clients = [c for c in CLIENTS[kind] if protocol in ENGINE_PROTOCOLS.get(c, (protocol,))]
    return f"@{'|'.join(SERVERS[kind])}  +{'|'.join(clients)}"
