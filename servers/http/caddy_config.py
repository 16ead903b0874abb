"""Caddy's JSON configuration for the wirebench front (pure: data in, a dict out).

One Caddy server terminates the client-facing protocol and proxies every request to
the backend over one kept-alive HTTP/1.1 hop on a unix socket. The hop is the same
whatever the client speaks, so the only variable between `rest-h1@caddy`,
`rest-h2@caddy` and `rest-h3@caddy` is the client-facing protocol.

Listeners are sockets the Python side bound (port 0 works): Caddy takes them as
`fd/N` (TCP) and `fdgram/N` (UDP, for QUIC) network addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CERT_TAG = "wirebench"
# The backend hop: connections kept open and reused; enough idle ones for any load
# point the harness runs (at most a few hundred concurrent users).
MAX_IDLE_CONNS = 512


@dataclass(frozen=True)
class FrontSpec:
    version: str                 # "h1" (cleartext), "h2" (TLS, ALPN h2), "h3" (QUIC)
    tcp_fd: int                  # the client-facing TCP listener (h3: its TCP sibling)
    backend_socket: Path         # the backend's unix socket
    udp_fd: int | None = None    # h3 only: the QUIC socket
    h2c_fd: int | None = None    # h2 only: a cleartext HTTP/2 (prior knowledge) listener
    cert: Path | None = None     # TLS chain and key (h2, h3)
    key: Path | None = None
    tls_min: str = "1.2"         # lowest TLS version the TCP listener accepts
    storage: Path | None = None  # Caddy's data directory (never the user's home)
    # h3 only: more (TCP, UDP) listener pairs on the same port, other addresses (::1
    # beside 127.0.0.1 for `localhost`)
    more_h3_fds: tuple[tuple[int, int], ...] = ()


def build(spec: FrontSpec) -> dict[str, Any]:
    servers = {"front": _front_server(spec)}
    if spec.h2c_fd is not None:
        servers["h2c"] = {"listen": [f"fd/{spec.h2c_fd}"], "protocols": ["h1", "h2c"],
                          "routes": [_proxy(spec.backend_socket)], **_COMMON}
    config: dict[str, Any] = {
        "admin": {"disabled": True},
        "logging": {"logs": {"default": {"level": "INFO"}}},   # startup line; no access log
        "apps": {"http": {"servers": servers}},
    }
    if spec.storage is not None:
        config["storage"] = {"module": "file_system", "root": str(spec.storage)}
    if spec.version != "h1":
        config["apps"]["tls"] = {"certificates": {"load_files": [
            {"certificate": str(spec.cert), "key": str(spec.key), "tags": [CERT_TAG]}]}}
    return config


# No automatic HTTPS (certificates are ours), no redirects; keep-alive connections are
# never closed after N requests (a capped server silently caps a run: ANCHORS.md).
_COMMON = {"automatic_https": {"disable": True}, "idle_timeout": "5m"}


def _front_server(spec: FrontSpec) -> dict[str, Any]:
    server: dict[str, Any] = {"routes": [_proxy(spec.backend_socket)], **_COMMON}
    if spec.version == "h1":
        server.update(listen=[f"fd/{spec.tcp_fd}"], protocols=["h1"])
        return server
    policy = {"certificate_selection": {"any_tag": [CERT_TAG]},
              "protocol_min": f"tls{spec.tls_min}"}
    if spec.version == "h2":
        server.update(listen=[f"fd/{spec.tcp_fd}"], protocols=["h1", "h2"])
        policy["alpn"] = ["h2", "http/1.1"]     # as hypercorn: a fallback is the client's error
    else:
        pairs = [(spec.tcp_fd, spec.udp_fd), *spec.more_h3_fds]
        server.update(listen=[a for tcp, udp in pairs for a in (f"fd/{tcp}", f"fdgram/{udp}")],
                      listen_protocols=[p for _ in pairs for p in (["h1", "h2"], ["h3"])],
                      protocols=["h1", "h2", "h3"])
        policy["protocol_min"] = "tls1.3"
    server["tls_connection_policies"] = [policy]
    return server


def _proxy(backend: Path) -> dict[str, Any]:
    return {"handle": [{
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"unix/{backend}"}],
        # No flush_interval: Caddy flushes text/event-stream (SSE) responses per write
        # on its own, and a unary response then leaves in one write. -1 (flush every
        # write) sent its headers and its body as two TCP segments ~40 us apart, which
        # woke the client twice per response.
        "transport": {"protocol": "http", "versions": ["1.1"], "compression": False,
                      "keep_alive": {"enabled": True, "max_idle_conns": MAX_IDLE_CONNS,
                                     "max_idle_conns_per_host": MAX_IDLE_CONNS,
                                     "idle_timeout": "60s"}},   # < the backend's 75 s
    }]}
