"""The namespace topology: real namespaces, a real veth link, real counters."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

from harness.netlab.netns import CLIENT_DEV, SERVER_IP, Topology
from tests.processes import gone
from base.paths import PACKAGE_ROOT as ROOT
from servers.launcher import start_server

pytestmark = pytest.mark.network
MSS = 1448          # 1500 MTU less IPv4, TCP and timestamp option headers


def retransmitted(topo: Topology, side: str) -> int:
    """TCP segments that side has sent again (TcpRetransSegs of its namespace)."""
    snmp = subprocess.run(topo.wrap(side) + ["cat", "/proc/net/snmp"], capture_output=True,
                          text=True, check=True).stdout.splitlines()
    names, values = [line.split() for line in snmp if line.startswith("Tcp:")][:2]
    return int(values[names.index("RetransSegs")])


def link_in(pid: int) -> str:
    """The links of the network namespace process `pid` lives in ('' if it is gone)."""
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link"],
                         capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


def test_counters_see_a_known_transfer_and_nothing_is_left(tls_files):
    with Topology() as topo:
        holders = [p.pid for p in topo.holders.values()]
        assert all(CLIENT_DEV in link_in(pid) or "wbs0" in link_in(pid) for pid in holders)
        with start_server("h1", host=SERVER_IP, wrap=topo.wrap("server")) as srv:
            body = orjson.dumps({"input": ["x"] * 8, "dimensions": 1536})
            before = topo.counters()
            resent_before = retransmitted(topo, "server"), retransmitted(topo, "client")
            out = subprocess.run(topo.wrap("client") + [
                "curl", "--noproxy", "*", "-s", "-o", "/dev/null", "-w", "%{size_download} %{size_upload}",
                "-H", "content-type: application/json", "--data-binary", "@-",
                f"http://{SERVER_IP}:{srv.port}/v1/embeddings"],
                input=body, capture_output=True, check=True)
            delta = topo.counters() - before
            resent_down = retransmitted(topo, "server") - resent_before[0]
            resent_up = retransmitted(topo, "client") - resent_before[1]
        down_body, up_body = map(int, out.stdout.split())
        up, down = delta.ip_bytes()
        # Every byte of the bodies crossed the link, plus headers; never less.
        assert up > up_body and down > down_body
        # ...and not much more: IP + TCP headers (<= 60 B) per packet, HTTP headers, the
        # handshake and the close, and any segment TCP sent twice (a busy machine can
        # drop on the veth backlog; the resend is on the wire, so it is counted).
        assert down < down_body + 60 * delta.rx_packets + 600 + MSS * resent_down
        assert up < up_body + 60 * delta.tx_packets + 600 + MSS * resent_up
    # Unnamed namespaces die with their last process: no holder, no namespace, no veth.
    assert all(gone(pid) for pid in holders)


def test_client_namespace_reaches_the_server_only_over_the_link(tls_files):
    with Topology() as topo:
        with start_server("h1", host=SERVER_IP, wrap=topo.wrap("server")) as srv:
            # The server is not on the host's loopback: only the client namespace sees it.
            assert subprocess.run(["curl", "--noproxy", "*", "-s", "-m", "1",
                                   f"http://{SERVER_IP}:{srv.port}/health"],
                                  capture_output=True).returncode != 0
            ok = subprocess.run(topo.wrap("client") + ["curl", "--noproxy", "*", "-s", "-m", "2",
                                f"http://{SERVER_IP}:{srv.port}/health"], capture_output=True)
            assert json.loads(ok.stdout)["status"] == "ok"


def test_a_sigkilled_owner_leaves_no_namespace_or_device():
    script = ("import sys, time; sys.path.insert(0, %r)\n"
              "from harness.netlab.netns import Topology\n"
              "t = Topology().__enter__()\n"
              "print(t.holders['client'].pid, t.holders['server'].pid, flush=True)\n"
              "time.sleep(60)\n") % str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert CLIENT_DEV in link_in(pids[0])
    proc.kill()
    proc.wait()
    assert all(gone(pid) for pid in pids)        # PDEATHSIG took the holders along
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == ""


async def test_every_unary_protocol_crosses_the_link(tls_files):
    """The runner's topology works for TCP, TLS and QUIC alike."""
    with Topology() as topo:
        for kind, proto in (("h2", "rest-h2"), ("h3", "rest-h3")):
            with start_server(kind, host=SERVER_IP, wrap=topo.wrap("server")) as srv:
                code = ("import asyncio, sys; sys.path.insert(0, %r)\n"
                        "from clients import open_client\nfrom clients.base import Target\n"
                        "async def main():\n"
                        "    async with open_client(%r, Target(host=%r, port=%d, ca=%r,"
                        " server_name='wirebench.test')) as c:\n"
                        "        r = await c.embed({'input': ['a'], 'dimensions': 4})\n"
                        "        print(r.vectors.shape)\n"
                        "asyncio.run(main())\n") % (str(ROOT), proto, SERVER_IP, srv.port,
                                                    str(tls_files.ca))
                out = subprocess.run(topo.wrap("client") + [sys.executable, "-c", code],
                                     capture_output=True, text=True, timeout=30)
                assert out.stdout.strip() == "(1, 4)", out.stderr[-500:]
