"""A request's lifecycle in the style of `curl -w`: when name lookup, TCP connect, the
TLS (or QUIC, or WebSocket upgrade) handshake, sending, the first and the last byte
happened, as cumulative microseconds from the request's start.

Clients stamp absolute CLOCK_MONOTONIC times while they open a connection
(`ConnectStamps`) and while they run a request; `curl_style` turns them into the dict
that UnaryResult/StreamResult carry in `extra["phases"]`, with the names curl uses
(namelookup, connect, appconnect, pretransfer, starttransfer, total), so the harness
and libcurl's own figures line up one to one. A request that reused a connection has
zeros for the connection phases.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.base import Target, clock_ns
from clients.transport.resolver import Resolver


@dataclass
class ConnectStamps:
    """Absolute times (ns) at which opening one connection finished each step."""
    start: int
    dns: int | None = None          # name resolved (None: no lookup, an address was given)
    tcp: int | None = None          # TCP connected (None: no TCP, e.g. QUIC)
    handshake: int | None = None    # TLS / QUIC handshake or WebSocket upgrade done
                                    # (QUIC 0-RTT: None, the request did not wait for it)
    # With Target.resumption: "full" (no session offered, or the server declined it),
    # "session" (the handshake resumed), "0rtt" (resumed, the request rode as accepted
    # early data). None: resumption not asked for.
    resumed: str | None = None


def curl_style(t_start: int, opened: ConnectStamps | None, t_sent: int, t_first: int,
               t_end: int) -> dict[str, int]:
    """Cumulative us from t_start, as curl's time_* values (appconnect 0 without TLS)."""
    if opened is None and t_sent:   # warm: once per request on the hot path, kept cheap
        # (stamps taken after t_start, so never negative)
        return {"namelookup": 0, "connect": 0, "appconnect": 0,
                "pretransfer": (t_sent - t_start) // 1000,
                "starttransfer": (t_first - t_start) // 1000,
                "total": (t_end - t_start) // 1000}

    def us(t: int | None) -> int:
        return max(0, (t - t_start) // 1000) if t else 0
    out = {"namelookup": 0, "connect": 0, "appconnect": 0}
    if opened is not None:
        out["namelookup"] = us(opened.dns)
        out["connect"] = us(opened.tcp) or out["namelookup"]
        out["appconnect"] = us(opened.handshake)
    out.update(pretransfer=us(t_sent), starttransfer=us(t_first), total=us(t_end))
    return out


class HostResolver:
    """The address a client connects to: through the target's DNS server when it names
    one (the lab's DNS step, cached or not), else the host as given."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.resolver = (Resolver(target.dns, cache=target.dns_cache)
                         if target.dns is not None else None)

    async def address(self, stamps: ConnectStamps) -> str:
        if self.resolver is None:
            return self.target.host
        ip, _, _ = await self.resolver.resolve(self.target.host)
        stamps.dns = clock_ns()
        return ip
