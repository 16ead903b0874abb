"""Checks the HOL mechanism split's ordering leg with an instrument it does not use:
tshark capturing in the client's namespace.

    python benchmarks/hol_tshark_check.py [--protocol sse-h2] [--nth 60]   (root)

Runs a one-drop HOL point (8 token streams on one connection, 40 ms RTT, the nth
token-sized downstream packet dropped) through `python bench.py`, while tshark records
the client namespace's device. From the capture alone (TCP sequence analysis): for each
collateral stall, when the first segment sent after the token's emit reached the client
and when the lost segment's repair did; the client read the token right after the
repair, so the token's bytes were held by TCP ordering for (repair - arrival). Prints
that sum beside the split's `ordering_ms` for the same point. Encrypted payloads are
never read: arrival times and sequence numbers are enough.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.measure.hol import analyse_point, receipts  # noqa: E402
from harness.measure.hol_drops import HolParams, load_traces  # noqa: E402
from harness.measure.packetlog import read_csv  # noqa: E402

SCENARIO = """\
name: hol-tshark-check
workload: {{type: stream, prompt_tokens: 16, max_tokens: 40, ttft_ms: 20, itl_ms: 20}}
protocols: [{protocol}]
load: {{mode: closed, concurrency: 8, requests: 8, stagger_ms: 2.5}}
warmup: {{requests: 8}}
connection: {{connections: [1]}}
network:
  backend: auto
  congestion_control: reno
  seed: 7
  links:
    - name: one-drop
      rtt_ms: 40
      down:
        drops: [{{nth: [{nth}], min_size: 70, one_per_run: true}}]
"""


def holders() -> set[int]:
    """PIDs of the lab's namespace holders (`unshare --net -- sleep infinity`)."""
    out = subprocess.run(["pgrep", "-f", "sleep infinity"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def run_and_capture(work: Path, protocol: str, nth: int) -> tuple[Path, Path]:
    scenario = work / "scenario.yaml"
    scenario.write_text(SCENARIO.format(protocol=protocol, nth=nth))
    pcap = work / "client.pcapng"
    before = holders()
    bench = subprocess.Popen([sys.executable, "bench.py", str(scenario), "--out",
                              str(work / "out")], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not (new := holders() - before) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not new:
        bench.kill()
        raise SystemExit("the lab's namespaces did not appear (run as root)")
    client = min(new)                    # the client side's holder starts first
    tshark = subprocess.Popen(["nsenter", "-t", str(client), "-n", "--", "tshark", "-q",
                               "-i", "any", "-w", str(pcap), "-a", "duration:120"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, err = bench.communicate(timeout=300)
    tshark.terminate()
    tshark.wait(10)
    if bench.returncode:
        raise SystemExit(f"bench.py failed:\n{err.decode()[-2000:]}")
    return next((work / "out").iterdir()), pcap


def arrivals(pcap: Path, port: int) -> list[tuple[int, bool]]:
    """(CLOCK_MONOTONIC ns, is a repair) of every data segment to the client's port."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"tcp.dstport=={port} && tcp.len>0",
                          "-T", "fields", "-e", "frame.time_epoch",
                          "-e", "tcp.analysis.retransmission", "-e", "tcp.analysis.out_of_order"],
                         capture_output=True, text=True, check=True).stdout
    offset = time.time_ns() - time.monotonic_ns()       # the capture stamps wall-clock time
    rows = []
    for line in out.splitlines():
        t, rtx, ooo = (line.split("\t") + ["", ""])[:3]
        rows.append((round(float(t) * 1e9) - offset, bool(rtx or ooo)))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="sse-h2", help="a TCP stream protocol (default sse-h2)")
    p.add_argument("--nth", type=int, default=60, help="which token-sized packet to drop")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the network lab)")
    with tempfile.TemporaryDirectory(prefix="hol-tshark-") as tmp:
        run, pcap = run_and_capture(Path(tmp), a.protocol, a.nth)
        (row,) = json.loads((run / "summary.json").read_text())["rows"]
        (hol,) = row["hol"]
        mech = hol["mechanism"]
        traces = load_traces(glob.glob(str(run / "traces" / "*.json.gz"))[0])
        packets = list(read_csv(glob.glob(str(run / "packets" / "*.csv.gz"))[0]))
        analysis = analyse_point(traces, packets, HolParams(itl_ms=20, rtt_ms=40))
        seen = arrivals(pcap, traces[0].client_port)
        repairs = [t for t, repair in seen if repair]
        streams = {t.stream: t for t in traces}
        held = total = 0.0
        for stall in analysis.stall_list:
            if stall.kind != "collateral":
                continue
            toks = receipts(streams[stall.stream])
            emit, recv = next((t[1], t[2]) for t in toks
                              if t[0] == stall.token and t[2] == stall.end_ns)
            # The token's bytes reached the client with the first segment that could carry
            # them (one-way delay 20 ms); the client could read them once the repair came.
            came = next(t for t, _ in seen if t >= emit + 19_000_000)
            repair = max((t for t in repairs if t <= recv + 1_000_000), default=came)
            held += max(repair - came, 0) / 1e6
            total += stall.duration_ns / 1e6
        print(f"{a.protocol}, one connection, drop #{a.nth}: {len(repairs)} repair(s) in the "
              f"capture; collateral stall {total:.1f} ms over "
              f"{mech['collateral_stalls']} stalls")
        print(f"  tshark: held behind the gap       {held:8.1f} ms")
        print(f"  wirebench split: ordering_ms      {mech['ordering_ms']:8.1f} ms "
              f"(cwnd {mech['cwnd_ms']:.1f}, application "
              f"{mech['app_server_ms'] + mech['app_client_ms']:.1f}, source {mech['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
