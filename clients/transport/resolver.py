"""An async stub resolver over UDP, so a request's DNS step is a real, timed round trip.

    r = Resolver(("169.254.77.2", port), cache=False, timeout_s=1.0, attempts=2)
    ip, elapsed_ns, from_cache = await r.resolve("wirebench.test")

Clients call it instead of getaddrinfo (which would read /etc/hosts and nsswitch, block
a thread and hide the cost). One A query per attempt, on its own connected UDP socket
(as a libc stub does); `timeout_s` bounds each attempt, so no lookup ever waits longer
than `timeout_s * attempts`. With `cache=True` answers are kept for their TTL and
concurrent lookups of one name share one query; failures are never cached, so every
request that meets one counts its own error. Works on uvloop and the stdlib loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Callable, NamedTuple

from dnslib import QTYPE, RCODE, DNSError, DNSRecord

from clients.base import ClientError

clock_ns = time.perf_counter_ns


class DnsError(ClientError):
    """The name could not be resolved: NXDOMAIN, SERVFAIL, timeout, a bad reply."""
    kind = "dns"

    def __init__(self, name: str, server: tuple[str, int], cause: str, detail: str) -> None:
        super().__init__(f"DNS lookup of {name!r} via {server[0]}:{server[1]} failed: "
                         f"{detail}")
        self.name, self.server, self.cause = name, server, cause


class Resolution(NamedTuple):
    ip: str
    elapsed_ns: int         # time this call spent resolving (~0 from the cache)
    from_cache: bool        # True: no query was sent (cache hit, or `name` is an IP)


class _Reply(asyncio.DatagramProtocol):
    """Collects the first datagram (or socket error) of one query's socket."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.waiter.done():
            self.waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # On a connected socket: ICMP port/host unreachable, reported at once.
        if not self.waiter.done():
            self.waiter.set_exception(exc)


class Resolver:
    # Queries sent by every resolver of this process (a worker's clients each have
    # their own): the load generator reads it around its measured requests.
    sent_total = 0

    def __init__(self, server: tuple[str, int], *, cache: bool = True,
                 timeout_s: float = 1.0, attempts: int = 2,
                 clock: Callable[[], int] = clock_ns) -> None:
        """clock: nanoseconds now; it times lookups and ages cached answers (a test
        passes its own to expire a TTL without waiting for it)."""
        if timeout_s <= 0 or attempts < 1:
            raise ValueError("timeout_s must be > 0 and attempts >= 1")
        self.server = (server[0], int(server[1]))
        self.cache = cache
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.queries = 0                                     # sent, retries included
        self._cache: dict[str, tuple[str, int]] = {}         # name -> (ip, expiry ns)
        self._inflight: dict[str, asyncio.Task] = {}
        self._clock = clock

    async def resolve(self, name: str) -> Resolution:
        t0 = self._clock()
        key = name.rstrip(".").lower()
        if _is_ip(key):
            return Resolution(key, 0, True)
        if not self.cache:
            ip, _ = await self._lookup(key)
            return Resolution(ip, self._clock() - t0, False)
        hit = self._cache.get(key)
        if hit is not None and hit[1] > t0:
            return Resolution(hit[0], self._clock() - t0, True)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fill(key))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        # Shielded: one waiter being cancelled must not fail the others sharing it.
        ip = await asyncio.shield(task)
        return Resolution(ip, self._clock() - t0, False)

    def clear(self) -> None:
        self._cache.clear()

    def _done(self, key: str, task: asyncio.Task) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()    # retrieved even if every waiter was cancelled: no warning

    async def _fill(self, key: str) -> str:
        sent = self._clock()
        ip, ttl = await self._lookup(key)
        if ttl > 0:     # TTL counts from the question, as a resolver must assume
            self._cache[key] = (ip, sent + ttl * 1_000_000_000)
        return ip

    async def _lookup(self, name: str) -> tuple[str, int]:
        """(ip, ttl) from the server, or DnsError. Bounded by timeout_s * attempts."""
        loop = asyncio.get_running_loop()
        try:
            # A socket connected here: given remote_addr, the loop resolves even a
            # numeric address through getaddrinfo (uvloop: in its thread pool), ~0.2 ms
            # that curl's stub lookup does not pay (benchmarks/curl_phases.py).
            sock = socket.socket(socket.AF_INET6 if ":" in self.server[0] else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect(self.server)
                transport, proto = await loop.create_datagram_endpoint(_Reply, sock=sock)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            raise DnsError(name, self.server, "socket", f"cannot open a UDP socket: {exc}") \
                from None
        ids: set[int] = set()
        try:
            for _ in range(self.attempts):
                query = DNSRecord.question(name, "A")
                ids.add(query.header.id)
                self.queries += 1
                Resolver.sent_total += 1
                transport.sendto(query.pack())
                try:
                    async with asyncio.timeout(self.timeout_s):
                        # A late reply to an earlier attempt is as good as this one's.
                        raw = await asyncio.shield(proto.waiter)
                except TimeoutError:
                    continue
                except OSError as exc:
                    raise DnsError(name, self.server, "unreachable",
                                   f"server unreachable: {exc}") from None
                return _answer(name, self.server, raw, ids)
            raise DnsError(name, self.server, "timeout",
                           f"timeout: no reply after {self.attempts} attempt(s) of "
                           f"{self.timeout_s:g} s each")
        finally:
            transport.close()
            if proto.waiter.done() and not proto.waiter.cancelled():
                proto.waiter.exception()    # an ICMP error after the last attempt: seen


def _answer(name: str, server: tuple[str, int], raw: bytes, ids: set[int]) -> tuple[str, int]:
    """(ip, ttl) of the first A record in a reply, or DnsError saying what is wrong."""
    try:
        reply = DNSRecord.parse(raw)
    except (DNSError, IndexError, ValueError) as exc:
        raise DnsError(name, server, "malformed", f"malformed reply ({len(raw)} bytes): "
                                                  f"{exc}") from None
    h = reply.header
    if h.id not in ids:
        raise DnsError(name, server, "id_mismatch",
                       f"reply ID {h.id} matches no query sent (IDs {sorted(ids)})")
    if not h.qr:
        raise DnsError(name, server, "malformed", "reply is not a response (QR bit clear)")
    if str(reply.q.qname).rstrip(".").lower() != name:
        raise DnsError(name, server, "malformed",
                       f"reply answers another question ({reply.q.qname})")
    if h.tc:
        raise DnsError(name, server, "truncated", "reply truncated (TC); TCP not supported")
    if h.rcode != RCODE.NOERROR:
        code = RCODE.get(h.rcode, str(h.rcode))
        raise DnsError(name, server, str(code).lower(), f"{code}" +
                       (": no such name" if h.rcode == RCODE.NXDOMAIN else ""))
    for rr in reply.rr:
        if rr.rtype == QTYPE.A:
            return str(rr.rdata), int(rr.ttl)
    raise DnsError(name, server, "nodata", "no A record in the answer (NODATA)")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False
