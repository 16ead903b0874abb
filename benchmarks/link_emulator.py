"""Link emulator cost: what the TUN emulator itself adds to the link it emulates.

    python benchmarks/link_emulator.py [--quick] [--repeats N] [--out DIR] [--no-pin]

Needs root (network namespaces, TUN). Measures, each run `--repeats` times (medians):

- Added latency per packet: ICMP echo RTT between the two namespaces through the
  `tun` backend with a zero-delay LinkSpec, against the plain `veth` backend (p50,
  p99). The echo is answered by the server namespace's kernel and timed by the
  client kernel's receive stamp, so no probe process's wake-up is in it: the
  difference is the emulator's (two reads, two writes, its wake-ups).
- Delay fidelity: RTT with 10 ms one-way delay each way, against the 20 ms asked for,
  and the emulator's release lateness (how late a queued packet left).
- Throughput on one core: one TCP flow as fast as it goes for `--seconds` through
  the emulator with no impairment, with the packet log on, and with 5 ms delay each
  way: goodput, packets/s through the emulator (both directions), the emulator's CPU
  (% of one core; it is one thread), and release lateness. Then a rate-limited flow
  at a few rates with 5 ms delay and a queue of one bandwidth-delay product: does the
  goodput reach the rate, and how late do releases get, i.e. up to what rate the
  emulator is faithful.

With 2+ CPUs the emulator is pinned to the last CPU and the probes (client and
server) to the first (`--no-pin` to turn off), so "one core" is literal. Writes
`<out>/link-emulator-<UTC timestamp>/link_emulator.json` and `.md` (default out:
results/) and prints the markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from harness.scenario.linkspec import DirectionSpec, LinkSpec
from harness.netlab.netns import SERVER_IP, Topology, namespaces_possible

PROBE = [sys.executable, "-m", "harness.netlab.linkemu.probe"]


class Lab:
    """One Topology plus how to run the probes in it (pinned or not)."""

    def __init__(self, topo: Topology, pin: bool) -> None:
        self.topo = topo
        cpus = sorted(os.sched_getaffinity(0))
        self.pinned = pin and len(cpus) >= 2
        self.probe_cpu, self.emu_cpu = (cpus[0], cpus[-1]) if self.pinned else (None, None)
        if self.pinned and topo.emulator is not None:
            os.sched_setaffinity(topo.emulator.pid, {self.emu_cpu})

    def cmd(self, side: str, *args: str) -> list[str]:
        pin = ["taskset", "-c", str(self.probe_cpu)] if self.pinned else []
        return self.topo.wrap(side) + pin + PROBE + list(args)

    def run(self, side: str, *args: str, timeout: float = 60) -> Any:
        out = subprocess.run(self.cmd(side, *args), capture_output=True, text=True,
                             timeout=timeout, cwd=ROOT)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.splitlines()[-1])["result"]

    def rtt_ms(self, count: int, interval: float) -> list[float]:
        rtts = self.run("client", "rtt", SERVER_IP, "--count", str(count),
                        "--interval", str(interval))
        return sorted(r / 1e6 for r in rtts if r >= 0)

    def tcp(self, seconds: float, port: int) -> dict[str, Any]:
        """One TCP flow client -> server for `seconds`: goodput after the first 0.5 s,
        packets through the emulator per second, its CPU share, release lateness."""
        topo = self.topo
        sink = subprocess.Popen(self.cmd("server", "tcp-sink", SERVER_IP, str(port),
                                         "--deadline", str(seconds + 10)),
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            json.loads(sink.stdout.readline())
            st0 = topo.emulator_stats(reset=True)
            c0 = topo.counters()
            t0 = time.monotonic()
            self.run("client", "tcp-source", SERVER_IP, str(port), "--seconds", str(seconds))
            out, _ = sink.communicate(timeout=seconds + 15)
        finally:
            if sink.poll() is None:
                sink.kill()
        wall = time.monotonic() - t0
        st1 = topo.emulator_stats()
        c = topo.counters() - c0
        samples = json.loads(out.splitlines()[-1])["result"]["samples"]
        after = [s for s in samples if s[0] >= 0.5] or samples
        (ta, ba), (tb, bb) = after[0], samples[-1]
        res = {"goodput_mbit": (bb - ba) * 8 / max(tb - ta, 1e-9) / 1e6,
               "packets_per_s": (c.tx_packets + c.rx_packets) / wall}
        if st0 is not None:
            res["emulator_cpu_pct"] = (st1["cpu_s"] - st0["cpu_s"]) / wall * 100
            res["late_p50_us"] = st1["up"]["late_p50_us"]
            res["late_p99_us"] = st1["up"]["late_p99_us"]
            res["late_over_500us"] = st1["up"]["late_over_500us"]
        return res


def bdp_packets(rate_mbit: float, rtt_ms: float) -> int:
    """A queue of one bandwidth-delay product (1500 B packets): with it Reno keeps the
    link busy through its sawtooth, so goodput below the rate is the emulator's."""
    return max(100, math.ceil(rate_mbit * 1e6 * rtt_ms / 1e3 / 8 / 1500))


def pct(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)]


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sym = LinkSpec
    count = 200 if args.quick else 500
    results: dict[str, Any] = {"latency": [], "delay": [], "throughput": {}, "rates": {}}
    flows = {"unimpaired": sym(), "unimpaired, packet log on": sym(),
             "5 ms delay each way": sym(up=DirectionSpec(delay_ms=5),
                                        down=DirectionSpec(delay_ms=5))}
    port = 9200
    for rep in range(args.repeats):
        print(f"repeat {rep + 1}/{args.repeats}", file=sys.stderr)
        with Topology(backend="veth") as veth:
            lab = Lab(veth, args.pin)
            base = lab.rtt_ms(count, 0.001)
        with Topology(backend="tun") as tun:
            lab = Lab(tun, args.pin)
            emu = lab.rtt_ms(count, 0.001)
            results["latency"].append({
                "veth_p50_ms": pct(base, .5), "veth_p99_ms": pct(base, .99),
                "tun_p50_ms": pct(emu, .5), "tun_p99_ms": pct(emu, .99),
                "added_p50_ms": pct(emu, .5) - pct(base, .5),
                "added_p99_ms": pct(emu, .99) - pct(base, .99)})
            tun.configure(sym(up=DirectionSpec(delay_ms=10), down=DirectionSpec(delay_ms=10)))
            tun.emulator_stats(reset=True)
            d = lab.rtt_ms(count // 4, 0.002)
            st = tun.emulator_stats()
            results["delay"].append({
                "asked_rtt_ms": 20.0, "p50_ms": pct(d, .5), "p99_ms": pct(d, .99),
                "error_p50_ms": pct(d, .5) - 20.0, "late_p50_us": st["up"]["late_p50_us"],
                "late_p99_us": max(st["up"]["late_p99_us"], st["down"]["late_p99_us"])})
            for name, spec in flows.items():
                tun.configure(spec)
                logging = "log" in name
                if logging:
                    tun.log_start()
                port += 1
                r = lab.tcp(args.seconds, port)
                if logging:
                    path = Path(args.scratch) / "packets.csv.gz"
                    t0 = time.monotonic()
                    r["log_records"] = tun.log_stop(path)
                    r["log_write_s"] = time.monotonic() - t0
                    path.unlink(missing_ok=True)
                results["throughput"].setdefault(name, []).append(r)
            for rate in args.rates:
                tun.configure(sym(up=DirectionSpec(delay_ms=5, rate_mbit=rate,
                                                   queue_packets=bdp_packets(rate, 10)),
                                  down=DirectionSpec(delay_ms=5)))
                port += 1
                r = lab.tcp(args.seconds, port)
                r["rate_mbit"] = rate
                r["goodput_of_rate"] = r["goodput_mbit"] / rate
                results["rates"].setdefault(str(rate), []).append(r)
            info = tun.info()
    return {"runs": results, "info": info,
            "median": {"latency": median_of(results["latency"]),
                       "delay": median_of(results["delay"]),
                       "throughput": {k: median_of(v) for k, v in results["throughput"].items()},
                       "rates": {k: median_of(v) for k, v in results["rates"].items()}}}


def machine(pin: bool) -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "pinned": pin,
            "load_avg_at_start": os.getloadavg()}


def markdown(doc: dict[str, Any]) -> str:
    m = doc["median"]
    lat, dly = m["latency"], m["delay"]
    mach = doc["machine"]
    out = [f"# Link emulator cost ({doc['when']})", "",
           f"{mach['cpu']}, {mach['cpus']} CPUs, kernel {mach['kernel']}, Python "
           f"{mach['python']}; emulator {'pinned to its own CPU' if mach['pinned'] else 'not pinned'}; "
           f"{doc['args']['repeats']} repeats, medians; load average at start "
           f"{mach['load_avg_at_start'][0]:.2f}.", "",
           "## Added latency per packet (ICMP echo RTT, zero-delay link)", "",
           "| | p50 ms | p99 ms |", "|---|---:|---:|",
           f"| veth (no emulator) | {lat['veth_p50_ms']:.3f} | {lat['veth_p99_ms']:.3f} |",
           f"| tun emulator | {lat['tun_p50_ms']:.3f} | {lat['tun_p99_ms']:.3f} |",
           f"| added by the emulator (per round trip: 2 packets) | {lat['added_p50_ms']:.3f} | "
           f"{lat['added_p99_ms']:.3f} |", "",
           "## Delay fidelity (10 ms each way: RTT asked 20 ms)", "",
           f"RTT p50 {dly['p50_ms']:.3f} ms (error {dly['error_p50_ms'] * 1000:+.0f} us), "
           f"p99 {dly['p99_ms']:.3f} ms; release lateness p50 < {dly['late_p50_us']:.0f} us, "
           f"p99 < {dly['late_p99_us']:.0f} us (log2 buckets).", "",
           f"## Throughput, one TCP flow ({doc['args']['seconds']:g} s)", "",
           "| link | goodput Mbit/s | packets/s (both ways) | emulator CPU % of a core | "
           "release late p99 us |", "|---|---:|---:|---:|---:|"]
    for name, r in m["throughput"].items():
        late = f"< {r['late_p99_us']:.0f}" if r.get("late_p99_us") else "-"
        out.append(f"| {name} | {r['goodput_mbit']:,.0f} | {r['packets_per_s']:,.0f} | "
                   f"{r.get('emulator_cpu_pct', 0):.0f} | {late} |")
    logged = m["throughput"].get("unimpaired, packet log on", {})
    if logged.get("log_records"):
        out += ["", f"The packet log held {logged['log_records']:,.0f} records and took "
                f"{logged['log_write_s']:.1f} s to write (gzip CSV)."]
    out += ["", "## Rate limit, 5 ms delay each way, queue of one BDP (>= 100 packets)", "",
            "| rate Mbit/s | goodput Mbit/s | of the rate | emulator CPU % | "
            "release late p99 us | releases > 0.5 ms late |", "|---:|---:|---:|---:|---:|---:|"]
    for rate, r in m["rates"].items():
        out.append(f"| {float(rate):g} | {r['goodput_mbit']:.1f} | {r['goodput_of_rate']:.2f} | "
                   f"{r['emulator_cpu_pct']:.0f} | < {r['late_p99_us']:.0f} | "
                   f"{r['late_over_500us']:.0f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, 2 s flows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default="50,200,400", help="Mbit/s, comma-separated")
    ap.add_argument("--out", default=str(ROOT / "results"))
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.seconds = 1, 2.0
    args.rates = [float(r) for r in str(args.rates).split(",") if r]
    why = namespaces_possible()
    if why:
        print(f"link emulator benchmark: {why}", file=sys.stderr)
        return 2
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) / f"link-emulator-{when}"
    out.mkdir(parents=True, exist_ok=True)
    args.scratch = str(out)
    doc = {"when": when, "machine": machine(args.pin),
           "args": {k: v for k, v in vars(args).items() if k != "scratch"}}
    doc.update(measure(args))
    (out / "link_emulator.json").write_text(json.dumps(doc, indent=2))
    md = markdown(doc)
    (out / "link_emulator.md").write_text(md)
    print(md)
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
