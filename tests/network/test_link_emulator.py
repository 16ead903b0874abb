"""The TUN link emulator with real packets between the two namespaces.

Each check compares what the receiver saw with the emulator's packet log and the
LinkSpec: delay (ICMP echo RTT), Bernoulli loss, rate (TCP goodput), drop-list, jitter
order, and that nothing outlives close() or a SIGKILLed owner. Every probe is a
time-bounded subprocess (harness.netlab.linkemu.probe).
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

from harness.scenario.linkspec import Bernoulli, DirectionSpec, DropRule, LinkSpec
from harness.netlab.netns import CLIENT_DEV, OWNER_ENV, SERVER_IP, Topology, stale_cleanup
from harness.measure.packetlog import read_csv
from base.paths import PACKAGE_ROOT as ROOT
from tests.processes import gone

pytestmark = pytest.mark.network
PROBE = [sys.executable, "-m", "harness.netlab.linkemu.probe"]


@pytest.fixture(scope="module")
def topo():
    with Topology(backend="tun") as t:
        yield t


def probe(topo: Topology, side: str, *args: str, timeout: float = 20) -> object:
    out = subprocess.run(topo.wrap(side) + PROBE + list(args), capture_output=True,
                         text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-1000:]
    return json.loads(out.stdout.splitlines()[-1])["result"]


class Receiver:
    """A probe that listens in the server namespace, started before the sender."""

    def __init__(self, topo: Topology, *args: str) -> None:
        self.proc = subprocess.Popen(topo.wrap("server") + PROBE + list(args), cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def result(self, timeout: float = 20) -> object:
        out, _ = self.proc.communicate(timeout=timeout)
        return json.loads(out.splitlines()[-1])["result"]


def udp_log(path, port: int):
    return [r for r in read_csv(path) if r.proto == "udp" and r.dport == port]


def binomial_99(n: int, p: float) -> tuple[float, float]:
    half = 2.576 * math.sqrt(n * p * (1 - p))
    return n * p - half, n * p + half


def test_both_namespaces_use_reno_and_info_says_so(topo):
    info = topo.info()
    assert info["backend"] == "tun" and info["congestion_control"] == "reno"
    assert info["emulator"]["pid"] == topo.emulator.pid and info["emulator"]["version"]
    assert info["packet_log"] == "emulator"


def test_one_way_delay_gives_twice_the_delay_as_rtt(topo):
    d = 5.0
    topo.configure(LinkSpec(up=DirectionSpec(delay_ms=d), down=DirectionSpec(delay_ms=d)))
    rtts = probe(topo, "client", "rtt", SERVER_IP, "--count", "60", "--interval", "0.002")
    assert -1 not in rtts
    median_ms = statistics.median(rtts) / 1e6
    assert abs(median_ms - 2 * d) < 0.5, median_ms
    assert min(rtts) / 1e6 >= 2 * d                  # never early


def test_bernoulli_loss_rate_and_the_receiver_sees_exactly_the_forwarded(topo, tmp_path):
    p, n, port = 0.1, 2000, 9101
    topo.configure(LinkSpec(up=DirectionSpec(loss=Bernoulli(p)), seed=11))
    rx = Receiver(topo, "udp-recv", SERVER_IP, str(port), "--idle", "0.5", "--deadline", "15")
    topo.log_start()
    probe(topo, "client", "udp-send", SERVER_IP, str(port), "--count", str(n),
          "--sizes", "200", "--interval", "0")
    got = rx.result()
    assert topo.log_stop(tmp_path / "loss.csv.gz") > 0
    log = udp_log(tmp_path / "loss.csv.gz", port)
    assert len(log) == n                              # every datagram reached the link
    lost = [i for i, r in enumerate(log) if r.outcome == "loss"]
    lo, hi = binomial_99(n, p)
    assert lo <= len(lost) <= hi
    assert all(r.outcome in ("fwd", "loss") for r in log)
    forwarded = [i for i, r in enumerate(log) if r.outcome == "fwd"]
    assert got == forwarded                          # in order, none extra, none missing


def test_rate_gives_tcp_goodput_of_at_least_90_percent(topo):
    rate, port = 20.0, 9102
    spec = DirectionSpec(delay_ms=5, rate_mbit=rate, queue_packets=100)
    topo.configure(LinkSpec(up=spec, down=DirectionSpec(delay_ms=5)))
    rx = Receiver(topo, "tcp-sink", SERVER_IP, str(port), "--deadline", "10")
    probe(topo, "client", "tcp-source", SERVER_IP, str(port), "--seconds", "2.5")
    samples = rx.result()["samples"]
    (t0, b0), (t1, b1) = [s for s in samples if s[0] >= 0.5][0], samples[-1]
    goodput = (b1 - b0) * 8 / (t1 - t0) / 1e6
    assert goodput >= 0.9 * rate, goodput
    assert goodput <= 1.0 * rate                     # and the limit holds


def test_drop_list_drops_exactly_the_named_packets(topo, tmp_path):
    port = 9103
    rule = DropRule(nth=(3, 7), min_size=1000, proto="udp")
    topo.configure(LinkSpec(up=DirectionSpec(drops=(rule,))))
    rx = Receiver(topo, "udp-recv", SERVER_IP, str(port), "--idle", "0.3", "--deadline", "10")
    topo.log_start()
    # sizes alternate 1200, 200 (UDP payload): the big ones are seq 0, 2, 4, ...
    probe(topo, "client", "udp-send", SERVER_IP, str(port), "--count", "20",
          "--sizes", "1200,200", "--interval", "0.001")
    got = rx.result()
    topo.log_stop(tmp_path / "drops.csv")
    assert got == [s for s in range(20) if s not in (4, 12)]   # 3rd and 7th big ones
    log = udp_log(tmp_path / "drops.csv", port)
    assert [i for i, r in enumerate(log) if r.outcome != "fwd"] == [4, 12]
    assert {log[4].outcome, log[12].outcome} == {"droplist"}


def test_jitter_without_reorder_keeps_order_and_with_reorder_does_not(topo, tmp_path):
    port = 9104
    for reorder in (False, True):
        topo.configure(LinkSpec(up=DirectionSpec(delay_ms=1, jitter_ms=4, reorder=reorder)))
        rx = Receiver(topo, "udp-recv", SERVER_IP, str(port), "--idle", "0.3",
                      "--deadline", "10")
        topo.log_start()
        probe(topo, "client", "udp-send", SERVER_IP, str(port), "--count", "300",
              "--sizes", "100", "--interval", "0.0001")
        got = rx.result()
        topo.log_stop(tmp_path / "jitter.csv")
        log = udp_log(tmp_path / "jitter.csv", port)
        assert sorted(got) == list(range(300))
        delays = [(r.release_ns - r.t_ns) / 1e6 for r in log]
        assert 1 <= min(delays) and max(delays) <= 5 + (0 if reorder else 4)
        if reorder:
            assert got != sorted(got)
        else:
            assert got == sorted(got)
            assert [r.release_ns for r in log] == sorted(r.release_ns for r in log)


def test_counters_count_ip_bytes_without_a_link_header(topo):
    port = 9105
    topo.configure(LinkSpec())
    rx = Receiver(topo, "udp-recv", SERVER_IP, str(port), "--idle", "0.3", "--deadline", "10")
    before = topo.counters()
    probe(topo, "client", "udp-send", SERVER_IP, str(port), "--count", "50", "--sizes", "500")
    assert len(rx.result()) == 50
    delta = topo.counters() - before
    up, down = delta.ip_bytes()
    assert delta.header == 0 and delta.tx_packets == 50 and up == 50 * (500 + 28)
    assert delta.rx_packets == 0 and down == 0



def test_log_window_counters_match_the_log(topo, tmp_path):
    """The device counters log_stop() reports cover the log's own window: on a quiet
    link they count exactly the logged packets and bytes, each direction."""
    port = 9106
    topo.configure(LinkSpec())
    rx = Receiver(topo, "udp-recv", SERVER_IP, str(port), "--idle", "0.3", "--deadline", "10")
    topo.log_start()
    probe(topo, "client", "udp-send", SERVER_IP, str(port), "--count", "40", "--sizes", "300")
    assert len(rx.result()) == 40
    topo.log_stop(tmp_path / "window.csv")
    log = list(read_csv(tmp_path / "window.csv"))
    window = topo.log_counters
    assert window is not None
    up = [r for r in log if r.direction == "up"]
    assert (window.tx_packets, window.ip_bytes()[0]) == (len(up), sum(r.size for r in up))
    assert window.rx_packets == len(log) - len(up)

# -- nothing outlives its owner -------------------------------------------------------

def _marked() -> list[int]:
    """Processes carrying a Topology owner marker (holders, emulators)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if OWNER_ENV.encode() + b"=" in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def _no_tun_left(pids: list[int]) -> None:
    assert all(gone(pid) for pid in pids)
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == ""
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert CLIENT_DEV not in host_links and "wbs0" not in host_links


def test_close_leaves_no_device_holder_or_emulator():
    before = set(_marked())
    with Topology(backend="tun") as t:
        pids = [p.pid for p in t.holders.values()] + [t.emulator.pid]
        assert CLIENT_DEV in subprocess.run(t.wrap("client") + ["ip", "-o", "link"],
                                            capture_output=True, text=True).stdout
    _no_tun_left(pids)
    assert set(_marked()) <= before


def test_a_sigkilled_owner_leaves_nothing():
    script = ("import sys, time; sys.path.insert(0, %r)\n"
              "from harness.netlab.netns import Topology\n"
              "t = Topology(backend='tun').__enter__()\n"
              "print(t.holders['client'].pid, t.holders['server'].pid, t.emulator.pid,"
              " flush=True)\n"
              "time.sleep(60)\n") % str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
    finally:
        proc.kill()
        proc.wait()
    assert len(pids) == 3
    _no_tun_left(pids)                               # PDEATHSIG took them all along


def test_stale_cleanup_kills_leftovers_of_a_dead_owner_only():
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = subprocess.Popen(["sleep", "30"], env={**os.environ, OWNER_ENV: f"{dead.pid}:0"})
    alive = subprocess.Popen(["sleep", "30"], env={
        **os.environ, OWNER_ENV: f"{os.getpid()}:{_start(os.getpid())}"})
    try:
        time.sleep(0.05)
        killed = stale_cleanup()
        assert orphan.pid in killed and alive.pid not in killed
        assert orphan.wait(5) == -signal.SIGKILL
        assert alive.poll() is None
    finally:
        for p in (orphan, alive):
            p.kill()
            p.wait()


def _start(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]
