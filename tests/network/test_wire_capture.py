"""The wire bytes a run reports, against tcpdump on the same link.

A run as root takes each point's wire bytes and packets from the client veth's device
counters over the measured window (harness.netlab.netns.Topology.counters). Here
tcpdump, started by the test inside the run's client namespace, records every frame on
that device for the whole run; over the measured requests (the last `requests` of the
client's request-sized packets) the capture's IP bytes and packets per request must
equal the row's. Warm-up traffic counted into the window, a link header left in, or a
direction swapped would each put them percent apart. The row's `windows_unix_s` must
frame the same requests on the capture's clock: the measured ones inside it, the
warm-up before it.

tcpdump: `apt-get install tcpdump` (.ci/run installs it); pcap files read with dpkt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest

from harness.netlab.netns import CLIENT_DEV, CLIENT_IP, ETHERNET_HEADER
from tests.integration.test_bench_cli import (
    BENCH,
    ROOT,
    assert_no_leftovers,
    bench_env,
    result_dir,
    tagged_processes,
    write,
)

pytestmark = [pytest.mark.network,
              pytest.mark.skipif(shutil.which("tcpdump") is None,
                                 reason="tcpdump not installed (apt-get install tcpdump)")]

REQUESTS = 200
WARMUP = 20
# Every request carries ~1 KB of JSON or protobuf in one packet; nothing else the client
# sends is that large but a connection's first flight (TLS ClientHello, QUIC Initial).
REQUEST_PACKET = 700
BYTES_BOUND = 0.005     # the capture and the counters see the same frames: 0.5% is slack
PACKETS_BOUND = 0.02    # for the teardown's few packets the capture's window may include
WINDOW_SLACK_S = 0.25   # "go" to the first request; the last response to the results read

SCENARIO = """\
name: wire-capture
workload: {{type: embed, batch_size: 8, input_words: 16, dimensions: 1536, encoding: float}}
protocols: [{protocol}]
load: {{mode: closed, concurrency: [1], requests: {requests}}}
warmup: {{requests: {warmup}}}
seed: 1
"""


@dataclass
class Frame:
    t: float            # capture time, Unix s
    up: bool            # sent by the client
    ip_bytes: int
    ends: bool          # a TCP FIN or RST: the connection's teardown


def client_namespace(tag: str, bench: subprocess.Popen, timeout: float = 30.0) -> int:
    """The pid of the run's namespace holder whose namespace has the client device."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and bench.poll() is None:
        for pid, args in tagged_processes(tag):
            if "sleep infinity" in args and subprocess.run(
                    ["nsenter", "-t", str(pid), "-n", "ip", "link", "show", CLIENT_DEV],
                    capture_output=True, check=False).returncode == 0:
                return pid
        time.sleep(0.02)
    raise AssertionError(f"no client namespace with {CLIENT_DEV} appeared "
                         f"(run exit code {bench.poll()})")


def start_capture(holder: int, pcap: Path) -> subprocess.Popen:
    """tcpdump on the client device, whole frames; returns once it is listening."""
    cap = subprocess.Popen(["nsenter", "-t", str(holder), "-n", "tcpdump", "-i", CLIENT_DEV,
                            "-s", "0", "-U", "-n", "-Z", "root", "-w", str(pcap)],
                           stderr=subprocess.PIPE, text=True)
    line = cap.stderr.readline()        # "listening on wbc0, ..." once the device is open
    assert "listening on" in line, f"tcpdump did not start: {line}"
    return cap


def read_frames(pcap: Path) -> list[Frame]:
    frames = []
    with pcap.open("rb") as f:
        for t, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            up = isinstance(ip, dpkt.ip.IP) and dpkt.utils.inet_to_str(ip.src) == CLIENT_IP
            tcp = getattr(ip, "data", None)
            ends = isinstance(tcp, dpkt.tcp.TCP) and bool(
                tcp.flags & (dpkt.tcp.TH_FIN | dpkt.tcp.TH_RST))
            frames.append(Frame(t, up, len(buf) - ETHERNET_HEADER, ends))
    return frames


def request_packets(frames: list[Frame], requests: int) -> list[int]:
    """Indexes of the client's request packets: the warm-up's, then the measured ones.

    tcpdump starts once the run's namespace exists, while the run goes on, so on a busy
    machine it may miss the first warm-up requests; it must catch at least one, so the
    last `requests` are the measured ones, all of them."""
    starts = [i for i, fr in enumerate(frames) if fr.up and fr.ip_bytes > REQUEST_PACKET]
    assert len(starts) > requests, (
        f"the capture holds {len(starts)} request packets, not one more than the run's "
        f"{requests} measured ones: it began after the last warm-up request")
    return starts


def measured_window(frames: list[Frame], requests: int) -> list[Frame]:
    """From the first of the last `requests` request packets to the connection's end."""
    window = frames[request_packets(frames, requests)[-requests]:]
    end = next((i for i, fr in enumerate(window) if fr.ends), len(window))
    return window[:end]


def run_with_capture(tmp: Path, protocol: str) -> tuple[dict, list[Frame]]:
    scenario = write(tmp / "s.yaml", SCENARIO.format(protocol=protocol, requests=REQUESTS,
                                                     warmup=WARMUP))
    out, pcap, tag = tmp / "out", tmp / "run.pcap", uuid.uuid4().hex
    log = (tmp / "bench.log").open("w")
    bench = subprocess.Popen([sys.executable, BENCH, str(scenario), "--out", str(out)],
                             cwd=ROOT, env=bench_env(tmp / "tls", tag), stdout=log,
                             stderr=subprocess.STDOUT)
    cap = None
    try:
        cap = start_capture(client_namespace(tag, bench), pcap)
        assert bench.wait(timeout=90) == 0, (tmp / "bench.log").read_text()
    finally:
        for proc in (bench, cap):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        log.close()
        assert_no_leftovers(tag)
    rows = json.loads((result_dir(out) / "summary.json").read_text())["rows"]
    assert len(rows) == 1, rows
    return rows[0], read_frames(pcap)


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """protocol -> (row, frames), one run each for the whole module."""
    runs: dict[str, tuple[dict, list[Frame]]] = {}

    def run(protocol: str) -> tuple[dict, list[Frame]]:
        if protocol not in runs:
            runs[protocol] = run_with_capture(tmp_path_factory.mktemp("capture"), protocol)
        return runs[protocol]
    return run


@pytest.mark.parametrize("protocol", ["rest-h1", "grpc", "rest-h3@caddy+curl"])
def test_reported_wire_bytes_match_a_tcpdump_capture(captured, protocol):
    row, frames = captured(protocol)
    assert row["wire_source"].startswith("netns interface counters"), row["wire_source"]
    n = row["n"]
    assert n == REQUESTS and row["errors"] == 0, row
    window = measured_window(frames, n)
    up = [fr for fr in window if fr.up]
    down = [fr for fr in window if not fr.up]
    captured = {"wire_up_bytes": sum(fr.ip_bytes for fr in up) / n,
                "wire_down_bytes": sum(fr.ip_bytes for fr in down) / n,
                "packets_up": len(up) / n, "packets_down": len(down) / n}
    for key, got in captured.items():
        bound = BYTES_BOUND if key.endswith("bytes") else PACKETS_BOUND
        reported = row[key]
        assert abs(reported - got) <= bound * got, (
            f"{protocol} {key}: wirebench {reported:,.2f} per request, tcpdump "
            f"{got:,.2f} ({reported / got:.4f}x; bound {bound:.1%})")


def test_the_row_s_window_frames_the_measured_requests_on_the_capture_s_clock(captured):
    row, frames = captured("rest-h1")
    [(start, end)] = row["windows_unix_s"]              # one repeat
    starts = request_packets(frames, row["n"])
    measured = [frames[i].t for i in starts[-row["n"]:]]
    warmup = [frames[i].t for i in starts[:-row["n"]]]
    assert max(warmup) < start <= min(measured), (max(warmup), start, min(measured))
    assert max(measured) < end, (max(measured), end)
    # Opened just before "go", closed just after the last result came in.
    assert min(measured) - start < WINDOW_SLACK_S and end - max(measured) < WINDOW_SLACK_S, (
        start, min(measured), max(measured), end)
