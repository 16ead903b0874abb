"""Client and server in two network namespaces joined by one veth pair.

Wire bytes and packets come from the client-side interface's counters, which see every
protocol alike (TCP and QUIC, TLS and handshakes included). The namespaces are never
named or bind-mounted: each lives exactly as long as a holder process made by `unshare`
(and the processes entered into it), and every one of those dies with the runner
(PR_SET_PDEATHSIG), so even a SIGKILLed run leaves no namespace, device or address.

The link is a private /30 of link-local addresses that routes nowhere else. GSO is
limited to one segment so a "packet" on the counters is a packet on the wire, not a
64 KB offload batch; IPv6 is off on the link so no neighbour discovery adds bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from servers.lifetime import pdeathsig_prefix

CLIENT_IP = "169.254.77.1"
SERVER_IP = "169.254.77.2"
PREFIX = 30
CLIENT_DEV = "wbc0"
SERVER_DEV = "wbs0"
ETHERNET_HEADER = 14          # counted by the device, not part of the IP packet


class NetnsUnavailable(RuntimeError):
    pass


def namespaces_possible() -> str | None:
    """None if this process can make the topology, else why not (in words)."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to make network namespaces"
    for tool in ("unshare", "nsenter", "ip", "setpriv"):
        if shutil.which(tool) is None:
            return f"needs the '{tool}' command (util-linux / iproute2)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here: {probe.stderr.strip()}"
    return None


@dataclass(frozen=True)
class Counters:
    tx_bytes: int
    tx_packets: int
    rx_bytes: int
    rx_packets: int

    def __sub__(self, other: "Counters") -> "Counters":
        return Counters(self.tx_bytes - other.tx_bytes, self.tx_packets - other.tx_packets,
                        self.rx_bytes - other.rx_bytes, self.rx_packets - other.rx_packets)

    def ip_bytes(self) -> tuple[int, int]:
        """(up, down) IP bytes: device bytes less one Ethernet header per frame."""
        return (self.tx_bytes - ETHERNET_HEADER * self.tx_packets,
                self.rx_bytes - ETHERNET_HEADER * self.rx_packets)


class Topology:
    """`with Topology() as topo:` then run servers under `topo.wrap("server")`."""

    def __init__(self) -> None:
        self.holders: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> "Topology":
        try:
            for side in ("client", "server"):
                self.holders[side] = subprocess.Popen(
                    pdeathsig_prefix() + ["unshare", "--net", "--", "sleep", "infinity"],
                    stdin=subprocess.DEVNULL, start_new_session=True)
            self._wait_for_namespaces()
            self._link()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wrap(self, side: str) -> list[str]:
        """Command prefix that runs a program inside one side's namespace."""
        return ["nsenter", "-t", str(self.holders[side].pid), "-n", "--"]

    def _run(self, side: str | None, *args: str) -> str:
        cmd = (self.wrap(side) if side else []) + list(args)
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise NetnsUnavailable(f"`{' '.join(args)}` failed: {out.stderr.strip()}")
        return out.stdout

    def _wait_for_namespaces(self) -> None:
        # unshare has made its namespace once its net ns differs from ours.
        mine = os.readlink("/proc/self/ns/net")
        for side, proc in self.holders.items():
            for _ in range(200):
                try:
                    if os.readlink(f"/proc/{proc.pid}/ns/net") != mine:
                        break
                except OSError:
                    pass
                if proc.poll() is not None:
                    raise NetnsUnavailable(f"unshare for the {side} namespace exited "
                                           f"with {proc.returncode}")
                time.sleep(0.005)
            else:
                raise NetnsUnavailable(f"the {side} namespace did not appear")

    def _link(self) -> None:
        c, s = self.holders["client"].pid, self.holders["server"].pid
        self._run(None, "ip", "link", "add", CLIENT_DEV, "netns", str(c), "type", "veth",
                  "peer", "name", SERVER_DEV, "netns", str(s), "gso_max_segs", "1")
        for side, dev, ip in (("client", CLIENT_DEV, CLIENT_IP), ("server", SERVER_DEV, SERVER_IP)):
            self._run(side, "sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            self._run(side, "ip", "addr", "add", f"{ip}/{PREFIX}", "dev", dev)
            self._run(side, "ip", "link", "set", "lo", "up")
            self._run(side, "ip", "link", "set", dev, "up")

    def counters(self) -> Counters:
        """The client-side interface's counters: tx is upstream, rx is downstream."""
        info = json.loads(self._run("client", "ip", "-j", "-s", "link", "show", CLIENT_DEV))[0]
        st = info["stats64"]
        return Counters(st["tx"]["bytes"], st["tx"]["packets"],
                        st["rx"]["bytes"], st["rx"]["packets"])

    def close(self) -> None:
        for proc in self.holders.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.holders.clear()
