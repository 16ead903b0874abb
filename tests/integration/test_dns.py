"""The DNS step: the `dns` server kind and clients.transport.resolver over real UDP on loopback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest
import uvloop
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from clients.transport.resolver import DnsError, Resolver
from servers.dns_server import fetch_stats
from base.paths import PACKAGE_ROOT as ROOT
from servers.launcher import start_server
from tests.processes import gone

NAME = "wirebench.test"
ADDRESS = "169.254.77.2"        # what the lab serves; nothing needs to listen there
TIMEOUT_S, ATTEMPTS = 0.2, 2


@pytest.fixture(scope="module")
def dns():
    with start_server("dns", extra=["--address", ADDRESS, "--drop-names",
                                    "gone.test,lost.test"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow_dns():
    with start_server("dns", extra=["--delay-ms", "30"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def short_ttl_dns():
    with start_server("dns", extra=["--ttl", "1"]) as srv:
        yield srv


def where(srv) -> tuple[str, int]:
    return ("127.0.0.1", srv.port)


def resolver(srv, cache: bool) -> Resolver:
    return Resolver(where(srv), cache=cache, timeout_s=TIMEOUT_S, attempts=ATTEMPTS)


def queries(srv) -> int:
    return fetch_stats(where(srv))["queries"]


async def test_resolves_the_benchmark_name(dns):
    assert dns.info["names"] == [NAME] and dns.info["address"] == ADDRESS
    ip, elapsed_ns, from_cache = await resolver(dns, cache=False).resolve(NAME)
    assert (ip, from_cache) == (ADDRESS, False)
    assert 0 < elapsed_ns < TIMEOUT_S * 1e9


async def test_nxdomain_names_the_name_and_server(dns):
    with pytest.raises(DnsError) as err:
        await resolver(dns, cache=True).resolve("nosuch.test")
    assert err.value.kind == "dns" and err.value.cause == "nxdomain"
    assert "'nosuch.test'" in str(err.value) and "NXDOMAIN" in str(err.value)
    assert f"127.0.0.1:{dns.port}" in str(err.value)


async def test_a_dropped_name_times_out_within_the_bound(dns):
    before = fetch_stats(where(dns))["dropped"]
    t0 = time.monotonic()
    with pytest.raises(DnsError, match=r"timeout: no reply after 2 attempt") as err:
        await resolver(dns, cache=True).resolve("gone.test")
    took = time.monotonic() - t0
    assert err.value.cause == "timeout" and "'gone.test'" in str(err.value)
    assert TIMEOUT_S * ATTEMPTS * 0.9 <= took < TIMEOUT_S * ATTEMPTS + 0.3
    assert fetch_stats(where(dns))["dropped"] - before == ATTEMPTS   # one per attempt


async def test_cache_on_answers_the_second_lookup_locally(dns):
    r = resolver(dns, cache=True)
    before = queries(dns)
    first = await r.resolve(NAME)
    second = await r.resolve(NAME + ".")            # same name, absolute form
    assert not first.from_cache and second.from_cache and second.ip == ADDRESS
    assert second.elapsed_ns < 1_000_000            # no round trip: well under 1 ms
    assert queries(dns) - before == 1


async def test_cache_on_concurrent_first_lookups_share_one_query(dns):
    r = resolver(dns, cache=True)
    before = queries(dns)
    got = await asyncio.gather(*(r.resolve(NAME) for _ in range(10)))
    assert {g.ip for g in got} == {ADDRESS}
    assert queries(dns) - before == 1


async def test_cache_off_queries_every_time(dns):
    r = resolver(dns, cache=False)
    before = queries(dns)
    got = [await r.resolve(NAME) for _ in range(5)]
    assert not any(g.from_cache for g in got)
    assert queries(dns) - before == 5 == r.queries


async def test_failures_are_not_cached(dns):
    r = resolver(dns, cache=True)
    before = queries(dns)
    for _ in range(3):
        with pytest.raises(DnsError):
            await r.resolve("nosuch.test")
    assert queries(dns) - before == 3


async def test_the_resolver_delay_is_paid_per_query(slow_dns):
    r = resolver(slow_dns, cache=False)
    for _ in range(2):
        assert (await r.resolve(NAME)).elapsed_ns >= 30_000_000
    cached = resolver(slow_dns, cache=True)
    assert (await cached.resolve(NAME)).elapsed_ns >= 30_000_000
    assert (await cached.resolve(NAME)).elapsed_ns < 1_000_000


async def test_ttl_expiry_refetches(short_ttl_dns):
    """The 1 s TTL on an injected clock: exact, no waiting."""
    now = [10**12]
    r = Resolver(where(short_ttl_dns), cache=True, timeout_s=TIMEOUT_S, attempts=ATTEMPTS,
                 clock=lambda: now[0])
    before = queries(short_ttl_dns)
    assert not (await r.resolve(NAME)).from_cache
    now[0] += 999_999_999                       # 1 ns before the TTL runs out: cached
    assert (await r.resolve(NAME)).from_cache
    now[0] += 1                                 # the TTL is over: asked again
    assert not (await r.resolve(NAME)).from_cache
    assert queries(short_ttl_dns) - before == 2


async def test_an_ip_literal_needs_no_query(dns):
    assert await resolver(dns, cache=False).resolve("10.0.0.9") == ("10.0.0.9", 0, True)


def test_works_on_uvloop(dns):
    async def both():
        r = resolver(dns, cache=True)
        return await r.resolve(NAME), await r.resolve(NAME)
    first, second = uvloop.run(both())
    assert first.ip == ADDRESS and not first.from_cache and second.from_cache
    with pytest.raises(DnsError, match="timeout"):
        uvloop.run(resolver(dns, cache=False).resolve("lost.test"))


async def test_no_server_listening_fails_fast():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                   # closed again: nobody listens
    t0 = time.monotonic()
    with pytest.raises(DnsError) as err:
        await Resolver(("127.0.0.1", port), cache=False, timeout_s=1.0).resolve(NAME)
    assert err.value.cause in ("unreachable", "timeout")
    assert time.monotonic() - t0 < 2.5


def test_the_server_process_is_gone_after_stop():
    srv = start_server("dns")
    assert srv.alive()
    srv.stop()
    assert gone(srv.pid)


def test_the_server_dies_with_a_sigkilled_launcher():
    script = ("import sys, time; sys.path.insert(0, %r)\n"
              "from servers.launcher import start_server\n"
              "print(start_server('dns').pid, flush=True); time.sleep(60)\n") % str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert gone(pid)


# ---------------------------------------------------------------- bad servers (in-process)

class _Fake(asyncio.DatagramProtocol):
    def __init__(self, reply):
        self.reply = reply

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(self.reply(DNSRecord.parse(data)), addr)


def _servfail(q):
    r = q.reply()
    r.header.rcode = RCODE.SERVFAIL
    return r.pack()


def _wrong_id(q):
    r = q.reply()
    r.header.id = (q.header.id + 1) % 65536
    r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("10.0.0.1"), ttl=60))
    return r.pack()


def _nodata(q):
    return q.reply().pack()


@pytest.mark.parametrize("reply, cause, text", [
    (_servfail, "servfail", "SERVFAIL"),
    (_wrong_id, "id_mismatch", "matches no query"),
    (lambda q: b"\x00\x01garbage", "malformed", "malformed reply"),
    (_nodata, "nodata", "NODATA"),
])
async def test_bad_replies_are_clear_errors(reply, cause, text):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Fake(reply),
                                                       local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        with pytest.raises(DnsError, match=text) as err:
            await Resolver(("127.0.0.1", port), cache=True, timeout_s=1.0).resolve(NAME)
        assert err.value.cause == cause and NAME in str(err.value)
    finally:
        transport.close()

