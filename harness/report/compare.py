"""`python bench.py compare RUN_A RUN_B`: two result directories side by side.

Rows are matched by protocol, load point and network condition. Runs of different
workloads measure different things, so comparing them is refused (exit 2) unless
--force; a different machine, kernel or library version is shown as a warning.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from base.errors import BadInput
from harness.run.status import effective_status

METRICS = [("latency_p50_ms", "p50 ms"), ("latency_p99_ms", "p99 ms"), ("throughput_rps", "rps"),
           ("ttft_p50_ms", "ttft p50"), ("client_cpu_ms_per_req", "client CPU ms"),
           ("server_cpu_ms_per_req", "server CPU ms")]


class CompareError(BadInput):
    pass


def load_run(path: str) -> dict[str, Any]:
    p = Path(path)
    summary = p / "summary.json" if p.is_dir() else p
    try:
        run = json.loads(summary.read_text())
        run["status"] = effective_status(run)      # a killed run left "running"
        return run
    except FileNotFoundError:
        raise CompareError(f"{path}: no summary.json (expected a results/<run> directory)") from None
    except json.JSONDecodeError as exc:
        raise CompareError(f"{summary}: not valid JSON ({exc})") from None


def _key(row: dict[str, Any]) -> tuple:
    return (row.get("cell", row["protocol"]), row["mode"], row.get("concurrency"), row.get("rate_offered_rps"),
            row.get("network", "loopback"), row.get("connections_policy"))


def differences(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(reasons the comparison is unsafe, warnings)."""
    unsafe, warn = [], []
    if a["scenario"]["workload"] != b["scenario"]["workload"]:
        unsafe.append(f"workloads differ: {a['scenario']['workload']} vs {b['scenario']['workload']}")
    ea, eb = a["environment"], b["environment"]
    for field in ("cpu", "cores", "kernel", "python", "tcp_congestion_control"):
        if ea.get(field) != eb.get(field):
            warn.append(f"{field}: {ea.get(field)} vs {eb.get(field)}")
    for pkg, va in (ea.get("packages") or {}).items():
        vb = (eb.get("packages") or {}).get(pkg)
        if va != vb:
            warn.append(f"{pkg}: {va} vs {vb}")
    for run in (a, b):
        if run.get("status") != "complete":
            warn.append(f"run {run.get('started_utc')} is {run.get('status')}: partial "
                        f"results (incomplete)")
    return unsafe, warn


def _ratio(va: Any, vb: Any) -> str:
    if not va or vb is None:
        return "-"
    return f"{vb / va:.2f}x"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python bench.py compare")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--force", action="store_true", help="compare even if workloads differ")
    args = p.parse_args(argv)
    # Off a terminal rich would squeeze the table into 80 columns: give it room.
    console = Console(width=None if sys.stdout.isatty() else 200)
    a, b = load_run(args.run_a), load_run(args.run_b)      # CompareError: bad input
    unsafe, warn = differences(a, b)
    if unsafe and not args.force:
        for text in unsafe:
            console.print(f"[red]refusing to compare: {text}[/red] (--force to override)")
        return 2
    for text in unsafe + warn:
        console.print(f"[yellow]note: {text}[/yellow]")
    rows_b = {_key(r): r for r in b["rows"]}
    metrics = [m for m in METRICS if any(r.get(m[0]) is not None for r in a["rows"])]
    table = Table(title=f"A = {args.run_a}   B = {args.run_b}   (B/A)")
    table.add_column("protocol")
    table.add_column("load")
    for _, label in metrics:
        table.add_column(f"{label} A", justify="right")
        table.add_column(f"{label} B", justify="right")
        table.add_column("B/A", justify="right")
    only_a = []
    for ra in a["rows"]:
        rb = rows_b.pop(_key(ra), None)
        if rb is None:
            only_a.append(ra.get("cell", ra["protocol"]))
            continue
        load = f"c={ra['concurrency']}" if ra["mode"] == "closed" else f"{ra['rate_offered_rps']:g}/s"
        cells = [ra.get("cell", ra["protocol"]), load]
        for field, _ in metrics:
            va, vb = ra.get(field), rb.get(field)
            cells += ["-" if va is None else f"{va:,.3f}", "-" if vb is None else f"{vb:,.3f}",
                      _ratio(va, vb)]
        table.add_row(*cells)
    console.print(table)
    if only_a or rows_b:
        console.print(f"only in A: {sorted(set(only_a)) or '-'}; only in B: "
                      f"{sorted({k[0] for k in rows_b}) or '-'}")
    return 0
