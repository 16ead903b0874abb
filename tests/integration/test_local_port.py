"""StreamResult.extra["local_port"]: the client's port of the connection that carried an
SSE stream, on every HTTP transport of both engines (the network lab matches it against
its packet log).

Checked against the kernel's own socket table: the port must be the local end of a live
connection from this process to the server (TCP; for HTTP/3 a UDP socket connected to
the server's port), two connections must give two ports, and two streams multiplexed on
one HTTP/2 or HTTP/3 connection the same one.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from clients import open_client
from clients.base import Target

CHAT = {"messages": [{"role": "user", "content": "port"}], "max_tokens": 4, "stream": True,
        "wirebench": {"itl_ms": 1}}

# cell -> (protocol suffix, server kind, server flags, Target overrides, transport)
CELLS = {
    "h1": ("h1", "h1", [], {}, "tcp"),
    "h2": ("h2", "h2", ["--h2c-port", "0"], {}, "tcp"),
    "h2c": ("h2", "h2", ["--h2c-port", "0"], {"tls": False}, "tcp"),
    "h3": ("h3", "h3", [], {}, "udp"),
}
ENGINES = ["python", "curl"]


def _ports_to(server_port: int, kind: str) -> set[int]:
    """Local ports of this process's sockets whose remote end is `server_port`."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    ports = set()
    for table in (f"/proc/net/{kind}", f"/proc/net/{kind}6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, remote, inode = fields[1], fields[2], fields[9]
                    if inode in mine and int(remote.rsplit(":", 1)[1], 16) == server_port:
                        ports.add(int(local.rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def _target(servers, tls_files, cell: str) -> tuple[Target, int]:
    _, kind, flags, overrides, _ = CELLS[cell]
    srv = servers.start(kind, extra=flags)
    port = srv.info["h2c_port"] if cell == "h2c" else srv.port
    return Target(port=port, ca=tls_files.ca, **overrides), port


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell", CELLS)
async def test_stream_reports_its_connections_local_port(servers, tls_files, cell, engine):
    if cell == "h3" and engine == "python":
        pytest.importorskip("aioquic")
    suffix, _, _, _, kind = CELLS[cell]
    target, server_port = _target(servers, tls_files, cell)
    async with open_client(f"sse-{suffix}", target, engine=engine) as a, \
            open_client(f"sse-{suffix}", target, engine=engine) as b:
        first = await a.generate(CHAT)
        other = await b.generate(CHAT)              # another client: another connection
        live = _ports_to(server_port, kind)         # both connections kept (reuse)
        port_a, port_b = first.extra["local_port"], other.extra["local_port"]
        assert isinstance(port_a, int) and isinstance(port_b, int)
        assert port_a in live and port_b in live, (port_a, port_b, live)
        assert port_a != port_b
        if suffix == "h1":
            # One connection per concurrent stream: two at once are two ports.
            pair = await asyncio.gather(a.generate(CHAT), a.generate(CHAT))
            assert pair[0].extra["local_port"] != pair[1].extra["local_port"]
            assert {r.extra["local_port"] for r in pair} <= _ports_to(server_port, kind)
        else:
            # Multiplexed: concurrent streams of one client share its connection's port.
            pair = await asyncio.gather(a.generate(CHAT), a.generate(CHAT))
            assert [r.extra["local_port"] for r in pair] == [port_a, port_a]


@pytest.mark.parametrize("engine", ENGINES)
async def test_new_connection_per_stream_new_port(servers, tls_files, engine):
    target, server_port = _target(servers, tls_files, "h1")
    async with open_client("sse-h1", target, engine=engine, reuse=False) as c:
        ports = [(await c.generate(CHAT)).extra["local_port"] for _ in range(3)]
    assert all(isinstance(p, int) and p > 0 for p in ports)
    assert len(set(ports)) == 3, ports
