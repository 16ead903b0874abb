"""Who waits for whom at one user, read off the wire: per connection of a capture, the
client's turnaround (its request after the previous response's last segment) and the
server's (its first response segment after the request).

    dumpcap -q -i lo -f tcp -s 96 -w run.pcapng &      # then the run, then stop dumpcap
    python benchmarks/wire_turnaround.py run.pcapng [--port P]

At concurrency 1 a closed loop's cycle is client turnaround + server turnaround (+ the
response's own transfer), so this splits a throughput gap between a harness client and
wrk / h2load (benchmarks/fidelity.py) into the client's share and the server's, with
timestamps no wirebench code took (tshark reads dumpcap's). One request per exchange
is assumed (HTTP/1.1 keep-alive, or HTTP/2 with one stream at a time). The server port
is the one most connections were opened to (their SYNs), unless --port names it.
Connections are listed in the order they opened; those with fewer than --min exchanges
(warm-ups, probes) are left out.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def tshark(pcap: Path, fields: list[str], display_filter: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(pcap), "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    cmd.append(display_filter)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def server_port(pcap: Path) -> int:
    syns = collections.Counter(int(r[0]) for r in tshark(
        pcap, ["tcp.dstport"], "tcp.flags.syn==1 and tcp.flags.ack==0"))
    if not syns:
        raise SystemExit(f"wire_turnaround: no connection opens in {pcap}; name --port")
    return syns.most_common(1)[0][0]


def turnarounds(pcap: Path, port: int) -> list[dict]:
    """Per client connection of the capture, in the order they opened (see split)."""
    return split(((float(t), int(src), int(dst)) for t, src, dst in tshark(
        pcap, ["frame.time_epoch", "tcp.srcport", "tcp.dstport"],
        f"tcp.port=={port} and tcp.len>0")), port)


def split(segments: Iterable[tuple[float, int, int]], port: int) -> list[dict]:
    """Data segments (time s, source port, destination port) to and from the server's
    `port`, per client connection in the order they opened: exchanges, the cycle, and
    the p50 / p90 of both turnarounds, in microseconds."""
    conns: dict[int, list[tuple[float, bool]]] = collections.defaultdict(list)
    for t, src, dst in segments:
        up = dst == port
        conns[src if up else dst].append((t, up))
    rows = []
    for client, segs in sorted(conns.items(), key=lambda kv: kv[1][0][0]):
        client_us, server_us = [], []
        last_down = sent = None
        for t, up in segs:
            if up:                      # a request (segment) from the client
                if last_down is not None:
                    client_us.append((t - last_down) * 1e6)
                sent, last_down = t, None
            else:                       # a response segment
                if sent is not None:
                    server_us.append((t - sent) * 1e6)
                    sent = None
                last_down = t
        if not client_us or not server_us:
            continue
        rows.append({"client_port": client, "exchanges": len(server_us),
                     "cycle_us": (segs[-1][0] - segs[0][0]) * 1e6 / len(server_us),
                     "client_p50_us": statistics.median(client_us),
                     "client_p90_us": _p90(client_us),
                     "server_p50_us": statistics.median(server_us),
                     "server_p90_us": _p90(server_us)})
    return rows


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pcap", type=Path)
    p.add_argument("--port", type=int, help="the server's port (default: the most opened)")
    p.add_argument("--min", type=int, default=500, help="fewest exchanges to list (500)")
    a = p.parse_args()
    if shutil.which("tshark") is None:
        sys.exit("wire_turnaround: needs tshark (Debian/Ubuntu: apt-get install -y tshark)")
    if not a.pcap.is_file():
        sys.exit(f"wire_turnaround: no capture at {a.pcap}")
    port = a.port or server_port(a.pcap)
    rows = [r for r in turnarounds(a.pcap, port) if r["exchanges"] >= a.min]
    print(f"server port {port}: {len(rows)} connections with >= {a.min} exchanges")
    print("| client port | exchanges | cycle us | client turnaround p50 / p90 us "
          "| server turnaround p50 / p90 us |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['client_port']} | {r['exchanges']:,} | {r['cycle_us']:.0f} "
              f"| {r['client_p50_us']:.0f} / {r['client_p90_us']:.0f} "
              f"| {r['server_p50_us']:.0f} / {r['server_p90_us']:.0f} |")


if __name__ == "__main__":
    main()
