"""Checks a run's saturation flags with an instrument it does not use: a /proc sampler
outside the run.

    python benchmarks/saturation_check.py [SCENARIO] [--protocols P,...] [--interval-ms 10]

Runs `python bench.py SCENARIO` (default scenarios/embedding.yaml) while this script
reads, every --interval-ms, the on-CPU time (/proc/PID/task/TID/schedstat, ns) of every
thread of the servers (`python -m servers`, Caddy) and the load workers
(`harness.run.worker`). Over each repeat's measured window (the row's `windows_unix_s`)
it takes the busiest server thread's share of a core, the busiest worker's (all its
threads, as the run counts a worker), and the cores all of them used together; prints
them beside the run's own figures and flags; and names every row where the two fall on
different sides of a threshold (harness.measure.saturation: 85% of a core for a thread
or a worker, 85% of the machine's cores for everything together) by more than 3 points.
Exit code 1 if any row disagrees. The sampler's own CPU (printed; under 10% of a core at
10 ms) is not among the processes either side counts, but it competes with them for
this machine's cores.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = {"-m servers": "server", "caddy run": "server", "harness.run.worker": "client"}
THRESHOLD = 0.85            # harness.measure.saturation's BUSY_THREAD and BUSY_MACHINE
MARGIN = 0.03               # closer to the threshold than this: borderline, not a disagreement


def descendants(root: int) -> list[int]:
    """Every process under `root` (/proc/PID/task/TID/children, read at each sample:
    a point's workers are found within one sample of their start)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                todo.extend(map(int, kids))
                found.extend(map(int, kids))
        except OSError:
            continue
    return found


def role_of(pid: int) -> str | None:
    """"server" / "client" by command line; None for anything else (namespace holders)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return next((r for pat, r in PATTERNS.items() if pat in cmd), None)


def thread_cpu_s(pid: int) -> dict[str, float]:
    # Not harness.measure.cpu's reader, on purpose: the check shares no code with what
    # it checks.
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        threads[tid] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]) / 1e9
    return threads


def sample_while(bench: subprocess.Popen, interval_s: float) -> list[dict]:
    """Snapshots {t, procs: {pid: (role, {tid: cpu s})}} until the run exits."""
    samples, roles, held = [], {}, {}
    while bench.poll() is None:
        t = time.time()
        for pid in descendants(bench.pid):
            if roles.get(pid) is None:  # asked again until known: a child caught between
                roles[pid] = role_of(pid)       # fork and exec still has bench.py's
            if roles[pid] is not None:          # command line
                try:
                    threads = thread_cpu_s(pid)
                except OSError:     # exited since
                    continue
                # A thread or process that ended keeps its last reading: its CPU was
                # spent (a blocking loop's thread ends before its worker reports).
                held[pid] = (roles[pid], {**held.get(pid, ("", {}))[1], **threads})
        samples.append({"t": t, "procs": dict(held)})
        time.sleep(interval_s)
    return samples


def cpu_at(samples: list[dict], times: list[float], t: float) -> dict[int, tuple[str, dict]]:
    """Every sampled thread's CPU seconds at instant t, interpolated between the two
    samples around it (reading at the nearest sample inside a short window would cut
    its idle edges off and overstate how busy it was). A thread that started between
    the two counts from zero."""
    i = max(1, min(bisect.bisect_left(times, t), len(samples) - 1))
    a, b = samples[i - 1], samples[i]
    f = min(1.0, max(0.0, (t - a["t"]) / (b["t"] - a["t"]))) if b["t"] > a["t"] else 1.0
    out = {}
    for pid, (role, after) in b["procs"].items():
        before = a["procs"].get(pid, (role, {}))[1]
        out[pid] = (role, {tid: before.get(tid, 0.0) + f * (cpu - before.get(tid, 0.0))
                           for tid, cpu in after.items()})
    return out


def window_use(samples: list[dict], start: float, end: float) -> dict[str, float] | None:
    """Busiest server thread, busiest client worker (shares of a core) and the cores
    all sampled processes used over [start, end]; None if the samples do not cover it."""
    times = [s["t"] for s in samples]
    if len(samples) < 2 or start < times[0] or end > times[-1] or end <= start:
        return None
    a, b = cpu_at(samples, times, start), cpu_at(samples, times, end)
    use = {"server": 0.0, "client": 0.0, "cores": 0.0}
    for pid, (role, after) in b.items():
        if pid not in a:
            continue
        before = a[pid][1]
        spent = [cpu - before[tid] for tid, cpu in after.items() if tid in before]
        if spent:           # a server's busiest thread; a client worker as a whole
            busy = max(spent) if role == "server" else sum(spent)
            use[role] = max(use[role], busy / (end - start))
            use["cores"] += sum(spent) / (end - start)
    return use


def side(value: float) -> str:
    if value >= THRESHOLD + MARGIN:
        return "over"
    if value <= THRESHOLD - MARGIN:
        return "under"
    return "borderline"


def compare(rows: list[dict], samples: list[dict], cpus: int | None = None) -> int:
    """Prints each row's sampled figures beside its flags; 1 if any row disagrees."""
    cpus = cpus or len(os.sched_getaffinity(0))     # the cores the run's processes share
    print(f"{'row':28} {'server thread':>14} {'client worker':>14} {'machine':>8}   "
          f"run's flags")
    disagreements = []
    for r in rows:
        uses = [u for w in r.get("windows_unix_s") or [] if (u := window_use(samples, *w))]
        label = f"{r['cell']} c={r['concurrency']}"
        if not uses:
            print(f"{label:28} (no window long enough to sample)")
            continue
        server = max(u["server"] for u in uses)
        client = max(u["client"] for u in uses)
        machine = max(u["cores"] for u in uses) / cpus
        flags = [k.split("_")[0] for k in ("server_bound", "client_bound", "machine_bound")
                 if r.get(k)]
        print(f"{label:28} {server:>14.0%} {client:>14.0%} {machine:>8.0%}   "
              f"{' '.join(flags) or '-'}")
        # A server flagged for a whole process spread over its cores (not one thread),
        # or a client for late starts alone, is not what these figures judge.
        by_thread = "thread" in str(r.get("server_bound"))
        by_cpu = "worker used" in str(r.get("client_bound"))
        for name, value, judged in (("server", server, by_thread or "server" not in flags),
                                    ("client", client, by_cpu or "client" not in flags),
                                    ("machine", machine, True)):
            flagged = name in flags
            s = side(value)
            if judged and ((s == "over" and not flagged) or (s == "under" and flagged)):
                disagreements.append(f"{label}: {name} {value:.0%} sampled, run says "
                                     f"{r.get(name + '_bound') or 'not bound'}")
    print()
    if disagreements:
        print("Disagreements:\n  " + "\n  ".join(disagreements))
        return 1
    print(f"Every row's server, client and machine flag agrees with the sampler (threshold "
          f"{THRESHOLD:.0%}, margin {MARGIN:.0%}).")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "embedding.yaml"))
    ap.add_argument("--protocols", help="passed to bench.py")
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--out", default=str(ROOT / "results"), help="bench.py's --out")
    args = ap.parse_args()
    out = Path(args.out)
    before = set(out.iterdir()) if out.is_dir() else set()
    cmd = [sys.executable, str(ROOT / "bench.py"), args.scenario, "--out", str(out)]
    if args.protocols:
        cmd += ["--protocols", args.protocols]
    bench = subprocess.Popen(cmd, cwd=ROOT)
    t0, cpu0 = time.monotonic(), time.process_time()
    try:
        samples = sample_while(bench, args.interval_ms / 1000)
    except KeyboardInterrupt:
        bench.terminate()
        bench.wait()
        raise
    if bench.returncode != 0:
        print(f"bench.py exited with {bench.returncode}; nothing to check", file=sys.stderr)
        return 2
    runs = sorted(set(out.iterdir()) - before)
    if not runs:
        print(f"no new result folder under {out}", file=sys.stderr)
        return 2
    summary = json.loads((runs[-1] / "summary.json").read_text())
    own = (time.process_time() - cpu0) / (time.monotonic() - t0)
    print(f"\nsaturation check of {runs[-1]}: {len(samples)} samples; the sampler itself "
          f"used {own:.0%} of a core\n")
    return compare(summary["rows"], samples)


if __name__ == "__main__":
    sys.exit(main())
