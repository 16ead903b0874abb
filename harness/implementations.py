"""Which implementation serves and which engine drives each protocol, with versions.

Results always name them: on this machine the spread between two libraries for one
protocol exceeds the spread between protocols (ANCHORS.md).
"""

from __future__ import annotations

from .environment import package_version
from .protocols import PROTOCOLS


def _v(name: str) -> str:
    return f"{name} {package_version(name) or '?'}"


SERVERS = {
    "h1": lambda: f"{_v('uvicorn')} + httptools",
    "h2": lambda: _v("hypercorn"),
    "h3": lambda: f"{_v('hypercorn')} + {_v('aioquic')}",
    "grpc": lambda: f"grpc.aio ({_v('grpcio')})",
    "ws": lambda: _v("websockets"),
}

CLIENTS = {
    "rest-h1": lambda: f"wirebench h1 ({_v('httptools')})",
    "sse-h1": lambda: f"wirebench h1 ({_v('httptools')})",
    "rest-h2": lambda: f"wirebench h2 ({_v('h2')})",
    "sse-h2": lambda: f"wirebench h2 ({_v('h2')})",
    "rest-h3": lambda: f"wirebench h3 ({_v('aioquic')})",
    "sse-h3": lambda: f"wirebench h3 ({_v('aioquic')})",
    "grpc": lambda: f"grpc.aio ({_v('grpcio')})",
    "grpc-stream": lambda: f"grpc.aio ({_v('grpcio')})",
    "ws": lambda: _v("websockets"),
    "ws-stream": lambda: _v("websockets"),
}


def server_impl(protocol: str, external: str | None = None) -> str:
    return external or SERVERS[PROTOCOLS[protocol].server]()


def client_engine(protocol: str) -> str:
    return CLIENTS[protocol]()
