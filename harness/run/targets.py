"""Targets the run does not start: an external endpoint (`target:`) and wirebench
servers started elsewhere (`remote:`), and what such a server says of its own CPU.

A server on another host cannot be sampled through /proc, so the runner asks it, before
and after a point, for its ServerStats (servers/core.py: request counters and the CPU
its process has used): HTTP kinds over `GET /health` (TCP, also for the HTTP/3 servers,
which serve TLS over TCP on the same port), gRPC over its Stats RPC, WebSocket over a
`stats` message. With --api-key on the server the counters need the key.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from base.cells import Cell
from clients.base import Target
from harness.scenario.model import Target as ExternalTarget
from harness.scenario.remote import Remote


def external_target(ext: ExternalTarget) -> Target:
    """Where the workers connect for `target:` (an OpenAI-style base URL)."""
    u = urlsplit(ext.base_url)
    tls = u.scheme == "https"
    return Target(host=u.hostname, port=u.port or (443 if tls else 80), tls=tls,
                  server_name=u.hostname, base_path=u.path.rstrip("/") or "",
                  api_key=os.environ.get(ext.api_key_env) if ext.api_key_env else None)


def remote_target(remote: Remote, cell: Cell, tls: bool, tls_version: str) -> Target:
    """A wirebench server started on another host: its port for this cell's server kind,
    verified against the CA it exported."""
    fields: dict[str, Any] = dict(
        host=remote.host, port=remote.port(cell.server_kind), tls=tls,
        server_name=remote.tls_name, ca=Path(remote.ca) if remote.ca else None,
        api_key=os.environ.get(remote.api_key_env) if remote.api_key_env else None)
    if tls and cell.kind != "h3":           # QUIC is TLS 1.3 only
        fields["tls_version"] = tls_version
    return Target(**fields)


def off_host(remote: Remote | None) -> bool:
    """Whether remote servers run on another host (then a token's one-way delay, server
    emit stamp to client receipt, would pair two clocks, and is not reported)."""
    if remote is None:
        return False
    try:
        return not ipaddress.ip_address(socket.gethostbyname(remote.host)).is_loopback
    except (OSError, ValueError):
        return True


def remote_cpu_s(cell: Cell, target: Target) -> float | None:
    """A remote wirebench server's CPU so far, from its own counters; None when it would
    not say, or for a Caddy cell (its counters are its backend's, not Caddy's)."""
    if cell.server == "caddy":
        return None
    counters = server_counters(cell, target)
    return counters["cpu_us"] / 1e6 if counters and "cpu_us" in counters else None


STATS_TIMEOUT_S = 5.0


def server_counters(cell: Cell, target: Target) -> dict[str, int] | None:
    """The server's counters, or None when it would not give them (no key, or not a
    wirebench server): the row then says its server CPU was not measured."""
    try:
        if cell.kind == "grpc":
            return asyncio.run(_grpc_stats(target))
        if cell.kind == "ws":
            return asyncio.run(_ws_stats(target))
        return _http_stats(target, h2c=cell.kind == "h2" and not target.tls)
    except Exception:        # noqa: BLE001 - any failure means "not measured", said per row
        return None


def _http_stats(target: Target, *, h2c: bool) -> dict[str, int] | None:
    import pycurl

    scheme = "https" if target.tls else "http"
    body = io.BytesIO()
    c = pycurl.Curl()
    try:
        c.setopt(pycurl.URL, f"{scheme}://{target.server_name}:{target.port}/health")
        # The TLS name, reached at the configured address (as the load clients do).
        c.setopt(pycurl.RESOLVE, [f"{target.server_name}:{target.port}:{target.host}"])
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE if h2c
                 else pycurl.CURL_HTTP_VERSION_2TLS)
        if target.tls and target.ca is not None:
            c.setopt(pycurl.CAINFO, str(target.ca))
        if target.api_key:
            c.setopt(pycurl.HTTPHEADER, [f"Authorization: Bearer {target.api_key}"])
        c.setopt(pycurl.TIMEOUT_MS, int(STATS_TIMEOUT_S * 1000))
        c.setopt(pycurl.NOPROXY, "*")
        c.setopt(pycurl.WRITEDATA, body)
        c.perform()
        if c.getinfo(pycurl.RESPONSE_CODE) != 200:
            return None
    finally:
        c.close()
    stats: Any = orjson.loads(body.getvalue()).get("stats")
    return stats if isinstance(stats, dict) else None


async def _grpc_stats(target: Target) -> dict[str, int]:
    from clients.grpc.common import STATS, open_channel, pb

    metadata = (("authorization", f"Bearer {target.api_key}"),) if target.api_key else None
    async with open_channel(target) as channel:
        raw = await channel.unary_unary(STATS)(b"", metadata=metadata,
                                                 timeout=STATS_TIMEOUT_S)
    return dict(pb.StatsResponse.FromString(raw).counters)


async def _ws_stats(target: Target) -> dict[str, int]:
    from clients import open_client

    client = open_client("ws", target, reuse=True)
    try:
        async with asyncio.timeout(STATS_TIMEOUT_S):
            return await client.server_stats()
    finally:
        await client.close()
