"""A tiny authoritative DNS server over UDP: the benchmark's "real DNS step".

    python -m servers dns --host 169.254.77.2 --port 0 [--name wirebench.test]
        [--address IP] [--ttl 300] [--delay-ms 0] [--drop-names a.test,b.test]

Answers A queries for the configured names (all with one address: --address, default
the bind host), NXDOMAIN for any other name, NOERROR with no answer (NODATA) for other
record types of a configured name. `--delay-ms` holds every answer back that long (the
"resolver delay" of a scenario); `--drop-names` are never answered, so clients time out.

Stats: a TXT query for `stats.wirebench.` is answered at once, neither delayed nor
counted, with "queries=N answered=N nxdomain=N nodata=N dropped=N malformed=N";
`fetch_stats((host, port))` asks and parses it. The same line goes to stderr on stop.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from dnslib import QTYPE, RCODE, RR, TXT, A, DNSError, DNSRecord

log = logging.getLogger("wirebench.dns")

DEFAULT_NAME = "wirebench.test"
STATS_NAME = "stats.wirebench."
COUNTERS = ("queries", "answered", "nxdomain", "nodata", "dropped", "malformed")


def fqdn(name: str) -> str:
    """Lower-case with one trailing dot: how names are compared."""
    return name.strip().rstrip(".").lower() + "."


@dataclass(frozen=True)
class DnsConfig:
    host: str = "127.0.0.1"
    port: int = 0
    names: tuple[str, ...] = (DEFAULT_NAME,)
    address: str = "127.0.0.1"              # what every configured name resolves to
    ttl: int = 300
    delay_ms: float = 0.0
    drop_names: tuple[str, ...] = ()


class DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, cfg: DnsConfig) -> None:
        self.names = {fqdn(n) for n in cfg.names}
        self.drop = {fqdn(n) for n in cfg.drop_names}
        self.address = cfg.address
        self.ttl = cfg.ttl
        self.delay_s = cfg.delay_ms / 1000.0
        self.stats: Counter[str] = Counter({k: 0 for k in COUNTERS})
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            query = DNSRecord.parse(data)
            q = query.q
            name, qtype = fqdn(str(q.qname)), q.qtype
        except (DNSError, IndexError, AttributeError, ValueError) as exc:
            self.stats["malformed"] += 1     # nothing trustworthy to answer to
            log.debug("malformed query from %s: %s", addr, exc)
            return
        reply = query.reply()                # copies id and question, sets QR and AA
        if name == STATS_NAME and qtype == QTYPE.TXT:
            reply.add_answer(RR(q.qname, QTYPE.TXT, rdata=TXT(self.stats_line()), ttl=0))
            self.transport.sendto(reply.pack(), addr)
            return
        self.stats["queries"] += 1
        if name in self.drop:
            self.stats["dropped"] += 1
            return
        if name not in self.names:
            reply.header.rcode = RCODE.NXDOMAIN
            self.stats["nxdomain"] += 1
        elif qtype == QTYPE.A:
            reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(self.address), ttl=self.ttl))
            self.stats["answered"] += 1
        else:
            self.stats["nodata"] += 1
        packet = reply.pack()
        if self.delay_s > 0:
            # A timer, not a sleeping task: concurrent queries are delayed independently.
            asyncio.get_running_loop().call_later(self.delay_s, self._send, packet, addr)
        else:
            self.transport.sendto(packet, addr)

    def _send(self, packet: bytes, addr: tuple) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(packet, addr)

    def stats_line(self) -> str:
        return " ".join(f"{k}={self.stats[k]}" for k in COUNTERS)


async def serve(cfg: DnsConfig, ready: Callable[[dict], None]) -> None:
    """Serve until cancelled; `ready` gets the bound port once listening."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: DnsProtocol(cfg), local_addr=(cfg.host, cfg.port))
    try:
        port = transport.get_extra_info("sockname")[1]
        ready({"port": port, "names": sorted(n.rstrip(".") for n in proto.names),
               "address": cfg.address, "ttl": cfg.ttl, "delay_ms": cfg.delay_ms})
        await asyncio.Future()               # until cancelled (SIGTERM/SIGINT)
    finally:
        sys.stderr.write(f"dns stats: {proto.stats_line()}\n")
        transport.close()


def fetch_stats(server: tuple[str, int], timeout_s: float = 2.0) -> dict[str, int]:
    """The counters of a running DNS server, via its TXT stats query (blocking)."""
    raw = DNSRecord.question(STATS_NAME, "TXT").send(server[0], server[1],
                                                      timeout=timeout_s)
    text = "".join(str(rr.rdata).strip('"') for rr in DNSRecord.parse(raw).rr)
    return {k: int(v) for k, v in (kv.split("=") for kv in text.split())}


def parse_args(argv: list[str]) -> DnsConfig:
    p = argparse.ArgumentParser(prog="python -m servers dns", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="UDP port; 0 lets the OS pick")
    p.add_argument("--name", action="append", dest="names", metavar="NAME",
                   help=f"a name to answer (repeatable; default {DEFAULT_NAME})")
    p.add_argument("--address", help="the IPv4 address the names resolve to "
                                     "(default: --host, or 127.0.0.1 for a wildcard bind)")
    p.add_argument("--ttl", type=int, default=300, help="answer TTL in seconds (default 300)")
    p.add_argument("--delay-ms", type=float, default=0.0,
                   help="hold every answer back this long (default 0)")
    p.add_argument("--drop-names", action="append", default=[], metavar="A,B",
                   help="comma-separated names never answered (clients time out)")
    a = p.parse_args(argv)
    address = a.address or (a.host if a.host not in ("0.0.0.0", "", "::") else "127.0.0.1")
    try:
        if ipaddress.ip_address(address).version != 4:
            raise ValueError
    except ValueError:
        p.error(f"--address must be an IPv4 address, got {address!r}")
    if a.ttl < 0 or a.delay_ms < 0:
        p.error("--ttl and --delay-ms must not be negative")
    drop = tuple(n for chunk in a.drop_names for n in chunk.split(",") if n.strip())
    return DnsConfig(host=a.host, port=a.port, names=tuple(a.names or (DEFAULT_NAME,)),
                     address=address, ttl=a.ttl, delay_ms=a.delay_ms, drop_names=drop)
