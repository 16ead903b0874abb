"""Streaming results name the client port of the connection that carried them, which the
network lab matches against its packet log: gRPC (from the peer the server saw) and
WebSocket (from the socket)."""

from __future__ import annotations

import asyncio

import pytest

from clients import open_client
from clients.base import Target
from servers.launcher import start_server

CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3, "stream": True}


def established_local_ports(server_port: int) -> set[int]:
    """Local ports of this machine's ESTABLISHED TCP connections to server_port."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                local, remote, state = line.split()[1:4]
                if state == "01" and int(remote.rsplit(":", 1)[1], 16) == server_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("kind, protocol", [("grpc", "grpc-stream"), ("ws", "ws-stream")])
def test_stream_result_names_its_connection_port(kind, protocol):
    async def scenario(port: int) -> None:
        one = open_client(protocol, Target(port=port))
        other = open_client(protocol, Target(port=port))
        try:
            shared = await asyncio.gather(*(one.generate(CHAT) for _ in range(3)))
            alone = await other.generate(CHAT)
            live = established_local_ports(port)
        finally:
            await asyncio.gather(one.close(), other.close())
        ports = {r.extra["local_port"] for r in shared}
        assert len(ports) == 1, "three streams on one connection name one port"
        assert alone.extra["local_port"] not in ports, "a second connection, a second port"
        assert ports | {alone.extra["local_port"]} <= live

    with start_server(kind) as srv:
        asyncio.run(scenario(srv.port))
