"""Client and server in two network namespaces joined by one link, plain or emulated.

Backends for the link between them (DESIGN.md section 6):
- "veth":  a veth pair, no emulation (what every non-lab run uses).
- "tun":   no veth: a TUN device in each namespace and the user-space emulator
           (harness.netlab.linkemu) forwarding between them through the LinkSpec's model. It
           works on any kernel with TUN, and its packet log is the ground truth.
- "netem": the veth pair with `tc netem` (+ tbf, pfifo, nft) on each sender's egress,
           for kernels that have sch_netem (this project's machine has not).
- "auto":  netem where the kernel has it, else tun.

Wire bytes and packets come from the sender's device counters in each direction (client
device tx = up, server device tx = down), read from /proc/<holder>/net/dev: they see
every protocol alike (TCP and QUIC, TLS and handshakes included). The namespaces are
never named or bind-mounted: each lives exactly as long as a holder process made by
`unshare` (and the processes entered into it), and every one of those, the emulator
included, dies with the process that made the Topology (PR_SET_PDEATHSIG through
`setpriv`), so even a SIGKILLed run leaves no namespace, device, address or sysctl;
TUN devices vanish with the emulator that holds them. PDEATHSIG follows the *thread*
that started the child: make the Topology on a thread that outlives it (the main one).
`stale_cleanup()` (run by every __enter__) kills what a run's owner left behind if it
ever survived: holders and emulators carry their owner's pid in their environment.

The link is a private /30 of link-local addresses that routes nowhere else. veth GSO is
limited to one segment so a "packet" on the counters is a packet on the wire, not a
64 KB offload batch (TUN has no GSO at all); IPv6 is off on the link so no neighbour
discovery adds bytes. Both namespaces use the same TCP congestion control ("reno" by
default, which aioquic also uses): it has flipped published HTTP/2 vs HTTP/3 results.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base.errors import BadInput, RunFailed
from base.lifetime import pdeathsig_prefix, reap

from harness.netlab.linkemu import VERSION as EMULATOR_VERSION
from .linkemu.control import EmulatorError, EmulatorProcess
from .linkemu.netem import netem_plan
from .linkemu.tun import device_tx
from harness.scenario.linkspec import LinkSpec

CLIENT_IP = "169.254.77.1"
SERVER_IP = "169.254.77.2"
PREFIX = 30
CLIENT_DEV = "wbc0"
SERVER_DEV = "wbs0"
ETHERNET_HEADER = 14          # counted by a veth device, not part of the IP packet
BACKENDS = ("auto", "veth", "tun", "netem")
OWNER_ENV = "WIREBENCH_LINK_OWNER"     # "<pid>:<start time>" of the Topology's process
# SCHED_FIFO for the emulator: off. It cut release lateness under CPU contention, but a
# real-time forwarder that polls starves the receiver sharing its core, and 1 in 3 TCP
# transfers then stalled with an unscaled receive window (measured on 2 cores).
EMULATOR_RT_PRIORITY: int | None = 10


class NetnsUnavailable(RunFailed):
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


@functools.lru_cache(maxsize=1)
def netem_available() -> bool:
    """Does this kernel have sch_netem? Tried in a throwaway namespace (its loopback)."""
    if shutil.which("tc") is None or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root",
                            "netem", "delay", "1ms"], capture_output=True, text=True)
    return probe.returncode == 0


def tun_available() -> str | None:
    """None if TUN devices can be made, else why not."""
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (modprobe tun)"
    return None


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown link backend {backend!r}; one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "netem" if netem_available() else "tun"
    return backend


# -- leftovers of killed runs --------------------------------------------------------

def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]   # field 22: starttime
    except (OSError, IndexError):
        return None


def _owner_marker() -> str:
    return f"{os.getpid()}:{_start_time(os.getpid())}"


def stale_cleanup() -> list[int]:
    """Kill holder and emulator processes whose owning process is gone (SIGKILL of an
    owner normally takes them along through PDEATHSIG; this is the belt to those
    braces). Processes of a live Topology, here or in another process, are left alone.
    Returns the pids killed."""
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        key = OWNER_ENV.encode() + b"="
        at = env.find(key)
        if at < 0 or (at > 0 and env[at - 1] != 0):
            continue
        owner = env[at + len(key):].split(b"\0", 1)[0].decode(errors="replace")
        pid, _, started = owner.partition(":")
        if pid.isdigit() and _start_time(int(pid)) == started:
            continue                                 # its owner is alive
        try:
            os.kill(int(entry), signal.SIGKILL)
            killed.append(int(entry))
        except ProcessLookupError:
            pass
    return killed


# -- counters ------------------------------------------------------------------------

@dataclass(frozen=True)
class Counters:
    """Bytes and packets the link carried: tx = upstream (client -> server), rx =
    downstream (server -> client), each as its sender's device counted it."""
    tx_bytes: int
    tx_packets: int
    rx_bytes: int
    rx_packets: int
    header: int = ETHERNET_HEADER   # link-layer bytes per packet in the device counts

    def __sub__(self, other: "Counters") -> "Counters":
        return Counters(self.tx_bytes - other.tx_bytes, self.tx_packets - other.tx_packets,
                        self.rx_bytes - other.rx_bytes, self.rx_packets - other.rx_packets,
                        self.header)

    def ip_bytes(self) -> tuple[int, int]:
        """(up, down) IP bytes: device bytes less the link-layer header of each frame
        (14 B on veth, none on TUN)."""
        return (self.tx_bytes - self.header * self.tx_packets,
                self.rx_bytes - self.header * self.rx_packets)


def _device_tx(pid: int, dev: str) -> tuple[int, int]:
    """(tx bytes, tx packets) of `dev` in the namespace of process `pid`."""
    try:
        return device_tx(f"/proc/{pid}/net/dev", dev)
    except OSError as exc:
        raise NetnsUnavailable(f"no device {dev} in the namespace of {pid}") from exc


# -- the topology --------------------------------------------------------------------

class Topology:
    """`with Topology(backend="tun") as topo:` then run servers under
    `topo.wrap("server")` and clients under `topo.wrap("client")`; `configure(spec)`
    changes the link, `log_start()` / `log_stop(path)` record its packets."""

    def __init__(self, backend: str = "veth", congestion_control: str = "reno",
                 spec: LinkSpec | None = None,
                 emulator_rt_priority: int | None = EMULATOR_RT_PRIORITY,
                 emulator_spin_us: float | None = None) -> None:
        self.requested_backend = backend
        self.backend = resolve_backend(backend)
        self.congestion_control = congestion_control
        self.spec = spec or LinkSpec()
        self.emulator_rt_priority = emulator_rt_priority
        self.emulator_spin_us = emulator_spin_us
        self.holders: dict[str, subprocess.Popen] = {}
        self.emulator: EmulatorProcess | None = None
        self.log_counters: Counters | None = None    # set by log_stop()
        self._timers: list[threading.Timer] = []
        self._notes: tuple[str, ...] = ()
        self.log_note = ("emulator" if self.backend == "tun" else
                         f"unavailable: the {self.backend} backend has no packet log")

    def __enter__(self) -> "Topology":
        if self.backend == "tun" and tun_available():
            raise NetnsUnavailable(tun_available())
        if self.backend == "netem" and not netem_available():
            raise NetnsUnavailable("this kernel has no sch_netem (tc qdisc ... netem "
                                   "fails); use the tun backend")
        stale_cleanup()
        env = {**os.environ, OWNER_ENV: _owner_marker()}
        try:
            for side in ("client", "server"):
                self.holders[side] = subprocess.Popen(
                    pdeathsig_prefix() + ["unshare", "--net", "--", "sleep", "infinity"],
                    stdin=subprocess.DEVNULL, start_new_session=True, env=env)
            self._wait_for_namespaces()
            self._sysctls()
            if self.backend == "tun":
                self._start_emulator(env)
            else:
                self._link()
            self.configure(self.spec)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wrap(self, side: str) -> list[str]:
        """Command prefix that runs a program inside one side's namespace."""
        return ["nsenter", "-t", str(self.holders[side].pid), "-n", "--"]

    def netns_path(self, side: str) -> str:
        return f"/proc/{self.holders[side].pid}/ns/net"

    def _run(self, side: str | None, *args: str, check: bool = True) -> str:
        cmd = (self.wrap(side) if side else []) + list(args)
        out = subprocess.run(cmd, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise NetnsUnavailable(f"`{' '.join(args)}` failed: {out.stderr.strip()}")
        return out.stdout

    def _wait_for_namespaces(self) -> None:
        # unshare has made its namespace once its net ns differs from ours.
        mine = os.readlink("/proc/self/ns/net")
        for side, proc in self.holders.items():
            for _ in range(400):
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

    def _sysctls(self) -> None:
        """Loopback up and the same congestion control on both sides (the sender's
        decides each direction, so both must be pinned)."""
        for side in ("client", "server"):
            self._run(side, "ip", "link", "set", "lo", "up")
            self._run(side, "sysctl", "-q", "-w",
                      f"net.ipv4.tcp_congestion_control={self.congestion_control}")

    def _link(self) -> None:
        c, s = self.holders["client"].pid, self.holders["server"].pid
        # gso_max_segs before `type` is the client end's, after `peer` the server end's
        self._run(None, "ip", "link", "add", CLIENT_DEV, "netns", str(c), "gso_max_segs", "1",
                  "type", "veth", "peer", "name", SERVER_DEV, "netns", str(s),
                  "gso_max_segs", "1")
        for side, dev, ip in (("client", CLIENT_DEV, CLIENT_IP), ("server", SERVER_DEV, SERVER_IP)):
            self._run(side, "sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            self._run(side, "ip", "addr", "add", f"{ip}/{PREFIX}", "dev", dev)
            self._run(side, "ip", "link", "set", dev, "up")

    def _start_emulator(self, env: dict[str, str]) -> None:
        try:
            self.emulator = EmulatorProcess(
                self.netns_path("client"), self.netns_path("server"), env=env,
                client_dev=CLIENT_DEV, server_dev=SERVER_DEV, client_ip=CLIENT_IP,
                server_ip=SERVER_IP, prefix=PREFIX, rt_priority=self.emulator_rt_priority,
                spin_us=self.emulator_spin_us)
        except EmulatorError as exc:
            raise NetnsUnavailable(str(exc)) from exc

    # -- the link --------------------------------------------------------------------

    def configure(self, spec: LinkSpec) -> None:
        """Make the link behave as `spec` from now on (drop-list counters and blackhole
        windows start now)."""
        if self.backend == "veth":
            if spec.up.impaired or spec.down.impaired:
                raise NetnsUnavailable("the veth backend does not emulate a link; "
                                       "use backend tun (or netem where the kernel has it)")
        elif self.backend == "tun":
            from .linkemu.specdict import spec_to_dict
            self._emulator("configure", spec=spec_to_dict(spec))
        else:
            self._configure_netem(spec)
        self.spec = spec

    def _configure_netem(self, spec: LinkSpec) -> None:
        for t in self._timers:
            t.cancel()
        self._timers = []
        plan = netem_plan(spec, CLIENT_DEV, SERVER_DEV)
        has_nft = shutil.which("nft") is not None
        if plan.needs_nft and not has_nft:
            raise NetnsUnavailable("drop-list and blackhole rules of the netem backend need "
                                   "the `nft` command (nftables)")
        for side, argv in plan.reset:
            if argv[0] != "nft" or has_nft:
                self._run(side, *argv, check=False)
        for side, argv in plan.setup:
            self._run(side, *argv)
        for side, script in plan.nft:
            out = subprocess.run(self.wrap(side) + ["nft", "-f", "-"], input=script,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise NetnsUnavailable(f"nft failed: {out.stderr.strip()}")
        for at_ms, side, argv in plan.timed:
            timer = threading.Timer(at_ms / 1000, self._run, (side, *argv),
                                    {"check": False})
            timer.daemon = True
            timer.start()
            self._timers.append(timer)
        self._notes = plan.notes

    def _emulator(self, cmd: str, timeout_s: float = 60.0, **fields: Any) -> dict[str, Any]:
        if self.emulator is None:
            raise NetnsUnavailable("the link emulator is not running")
        try:
            return self.emulator.request(cmd, timeout_s, **fields)
        except EmulatorError as exc:
            raise NetnsUnavailable(str(exc)) from exc

    def log_start(self) -> None:
        """Start recording every packet the link sees (tun backend; a no-op elsewhere:
        see info()["packet_log"])."""
        if self.backend == "tun":
            self._emulator("log_start")

    def log_stop(self, path: str | Path) -> int:
        """Write the packets seen since log_start() to `path` (packetlog CSV, gzip when
        it ends in .gz); returns how many. 0, and no file, where the backend has no
        log (veth, netem)."""
        if self.backend != "tun":
            return 0
        reply = self._emulator("log_stop", timeout_s=900, path=str(Path(path).resolve()))
        tx = reply.get("device_tx")
        # The senders' device counters over exactly the log's window (the emulator reads
        # them in the step that starts and stops the log): the cross-check of its bytes.
        self.log_counters = (Counters(tx["up"][0], tx["up"][1], tx["down"][0],
                                      tx["down"][1], 0) if tx else None)
        return int(reply["records"])

    def emulator_stats(self, reset: bool = False) -> dict[str, Any] | None:
        """The emulator's own counts: packets per outcome, release lateness (reset=True
        starts the lateness afresh after reading it, e.g. per plan point), CPU seconds.
        Lateness past 0.5 ms means the emulator, not the LinkSpec, shaped the traffic."""
        return self._emulator("stats", reset=reset) if self.backend == "tun" else None

    def counters(self) -> Counters:
        """Each direction as its sender's device counted it: tx is upstream (client
        device), rx is downstream (server device)."""
        up = _device_tx(self.holders["client"].pid, CLIENT_DEV)
        down = _device_tx(self.holders["server"].pid, SERVER_DEV)
        return Counters(up[0], up[1], down[0], down[1],
                        0 if self.backend == "tun" else ETHERNET_HEADER)

    def sysctl(self, side: str, name: str) -> str:
        return self._run(side, "sysctl", "-n", name).strip()

    def info(self) -> dict[str, Any]:
        """What the results must record about the link (DESIGN.md section 6)."""
        spec = self.spec
        cc: Any = self.congestion_control
        if self.holders:            # what the namespaces really use, not what was asked
            both = {side: self.sysctl(side, "net.ipv4.tcp_congestion_control")
                    for side in ("client", "server")}
            cc = both["client"] if both["client"] == both["server"] else both
        out: dict[str, Any] = {
            "backend": self.backend, "requested_backend": self.requested_backend,
            "congestion_control": cc,
            "queue_packets": {"up": spec.up.queue_packets, "down": spec.down.queue_packets},
            "seed": spec.seed, "link": spec.name, "kernel": platform.release(),
            "mtu": 1500, "packet_log": self.log_note,
            "offloads": "none (TUN, one IP packet per read)" if self.backend == "tun"
            else "veth gso_max_segs 1",
            "emulator": None, "notes": list(self._notes),
        }
        if self.emulator is not None:
            ready = self.emulator.ready
            out["emulator"] = {"pid": self.emulator.pid, "version": ready.get("version",
                               EMULATOR_VERSION), "scheduling": ready.get("scheduling")}
        return out

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers = []
        if self.emulator is not None:
            self.emulator.close()
            self.emulator = None
        for proc in self.holders.values():
            if proc.poll() is None:
                proc.kill()
            reap(proc)
        self.holders.clear()


class LabUnavailable(BadInput):
    """A scenario with `network:` on a machine (or with options) that cannot run it."""


def lab_refusal(loopback: bool) -> str | None:
    """Why the network lab cannot run here, with how to run it; None if it can."""
    reason = "--loopback was given" if loopback else namespaces_possible()
    if reason is None:
        return None
    return (f"this scenario sets network:, which needs the network lab, but {reason}. "
            f"Run it as root (sudo python bench.py ...) or in the compose service "
            f"(docker compose run --rm bench python bench.py ...); scenarios without "
            f"network: run anywhere")
