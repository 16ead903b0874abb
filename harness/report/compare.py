"""`python bench.py compare RUN_A RUN_B`: what changed between two runs, and whether it is
more than noise.

Rows are matched by cell, load point and network condition. Per row and metric: A, B,
the change, its interval from the runs' repeats and a verdict (better / worse / within
noise; harness.report.noise). `--fail-on-regression PCT` exits 99 when a metric got
worse by PCT percent or more beyond the noise. Runs of different workloads measure
different things, so comparing them is refused (exit 2) unless --force; a different
machine, kernel or library version is shown as a warning. Output: a table, or
`--format markdown` / `--format json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from base.errors import EXIT_OK, EXIT_THRESHOLDS, BadInput
from harness.measure.saturation import FLAGS
from harness.report.console import print_table
from harness.report.noise import UNKNOWN, WITHIN, Change, regressions, row_changes
from harness.report.tables import fmt, point_load, rate_figure
from harness.run.status import effective_status

SATURATION_NOTE = ("SRV / CLI A, B: the server's / client's core was saturated in that run "
                   "at this point (CPU: the machine's cores, client and server together): "
                   "the row measures a library or the machine, not the protocol.")
BACKEND_KNOBS = frozenset({"compute_ms", "server_cache", "ttft_ms", "itl_ms"})


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
        raise CompareError(f"{path}: no summary.json (expected a results/<run> "
                           f"directory)") from None
    except json.JSONDecodeError as exc:
        raise CompareError(f"{summary}: not valid JSON ({exc})") from None


def _key(row: dict[str, Any]) -> tuple:
    return (row.get("cell", row["protocol"]), row["mode"], row.get("concurrency"),
            row.get("rate_offered_rps"), row.get("network", "loopback"),
            row.get("connections_policy"))


def _workloads(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    given = run["scenario"]["workload"]
    return {w.get("type", "embed"): w for w in (given if isinstance(given, list) else [given])}


def differences(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(reasons the comparison is unsafe, warnings)."""
    unsafe, warn = [], []
    # A scenario gives one workload or several (an embed and a stream one): by type.
    by_a, by_b = _workloads(a), _workloads(b)
    if set(by_a) != set(by_b):
        unsafe.append(f"the workloads differ: {'+'.join(by_a)} vs {'+'.join(by_b)}")
    for kind in (k for k in by_a if k in by_b):
        wa, wb = by_a[kind], by_b[kind]
        name = "workload" if len(by_a) == 1 else f"workload[{kind}]"
        # What the requests are decides what is measured; how the backend answers them
        # (its simulated compute and token timing) is what a comparison is for.
        shape = sorted(k for k in set(wa) | set(wb)
                       if k not in BACKEND_KNOBS and wa.get(k) != wb.get(k))
        if shape:
            unsafe.append("the requests differ: " + ", ".join(
                f"{name}.{k} {wa.get(k)!r} vs {wb.get(k)!r}" for k in shape))
        for k in sorted(BACKEND_KNOBS):
            if wa.get(k) != wb.get(k):
                warn.append(f"backend changed: {name}.{k} {wa.get(k)!r} vs {wb.get(k)!r}")
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


def _saturated(ra: dict[str, Any], rb: dict[str, Any]) -> str:
    """SRV / CLI / CPU per run whose server / client side / machine was saturated at this
    point (that run's row measured a library or the machine, not the protocol), e.g.
    "SRV A+B", "CLI B"; "" if none."""
    out = []
    for flag, _, key in FLAGS:
        runs = "+".join(name for name, r in (("A", ra), ("B", rb)) if r.get(key))
        if runs:
            out.append(f"{flag} {runs}")
    return ", ".join(out)


def compare_rows(a: dict[str, Any], b: dict[str, Any]
                 ) -> tuple[list[tuple[str, str, Change]], list[str], list[str]]:
    """(cell, load, change) for every row both runs have; cells only in A; only in B.
    The load label carries the saturation flags (_saturated) of either run."""
    rows_b = {_key(r): r for r in b["rows"]}
    out, only_a = [], []
    for ra in a["rows"]:
        rb = rows_b.pop(_key(ra), None)
        if rb is None:
            only_a.append(ra.get("cell", ra["protocol"]))
            continue
        sat = _saturated(ra, rb)
        load = f"{point_load(ra)} {sat}" if sat else point_load(ra)
        out += [(ra.get("cell", ra["protocol"]), load, c) for c in row_changes(ra, rb)]
    return out, sorted(set(only_a)), sorted({k[0] for k in rows_b})


def _interval(c: Change) -> str:
    return "-" if c.low is None else f"{c.low:.2f}-{c.high:.2f}x"


def _verdict(c: Change) -> str:
    if c.verdict == UNKNOWN:
        return f"{UNKNOWN} ({max(1, min(c.repeats))} repeat)"
    return c.verdict if c.verdict == WITHIN else f"{c.verdict} {abs(c.percent):.0f}%"


def _figure(metric: str, v: float) -> str:
    """A rate as a rate (whole req/s from 100 up); a time to 4 significant digits."""
    return rate_figure(v) if metric.endswith("/s") else fmt(v)


def markdown(rows: list[tuple[str, str, Change]], title: str) -> str:
    lines = [f"## {title}", "", "| cell | load | metric | A | B | B/A | interval | verdict |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for cell, load, c in rows:
        lines.append(f"| {cell} | {load} | {c.metric} | {_figure(c.metric, c.a)} | "
                     f"{_figure(c.metric, c.b)} | "
                     f"{c.ratio:.2f}x | {_interval(c)} | {_verdict(c)} |")
    return "\n".join(lines) + "\n"


def _table(rows: list[tuple[str, str, Change]], title: str) -> Table:
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("cell", "load", "metric", "A", "B", "B/A", "interval", "verdict"):
        # Figures and verdicts stay on one line; a load with its saturation flags wraps.
        table.add_column(name, justify="left" if name in ("cell", "load", "metric", "verdict")
                         else "right", no_wrap=name != "load", min_width=8 if name == "load"
                         else None)
    style = {"worse": "red", "better": "green"}
    for cell, load, c in rows:
        mark = style.get(c.verdict)
        verdict = f"[{mark}]{_verdict(c)}[/{mark}]" if mark else _verdict(c)
        table.add_row(escape(cell), escape(load), c.metric, _figure(c.metric, c.a),
                      _figure(c.metric, c.b), f"{c.ratio:.2f}x", _interval(c), verdict)
    return table


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python bench.py compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--force", action="store_true", help="compare even if workloads differ")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--fail-on-regression", type=float, metavar="PCT",
                   help="exit 99 if a metric got worse by PCT%% or more beyond the noise")
    args = p.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 100,
                      color_system="auto" if sys.stdout.isatty() else None)
    a, b = load_run(args.run_a), load_run(args.run_b)      # CompareError: bad input
    unsafe, warn = differences(a, b)
    if unsafe and not args.force:
        raise CompareError("; ".join(f"refusing to compare: {t}" for t in unsafe)
                           + " (--force to override)")
    notes = unsafe + warn
    rows, only_a, only_b = compare_rows(a, b)
    bad = regressions([c for _, _, c in rows], args.fail_on_regression or 0.0)
    title = f"A = {args.run_a}  B = {args.run_b}"
    flagged = any(f" {flag} " in f" {load} " for _, load, _ in rows for flag, _, _ in FLAGS)
    if args.format == "json":
        print(json.dumps({"a": args.run_a, "b": args.run_b, "notes": notes,
                          "changes": [{"cell": cell, "load": load, **c.to_dict()}
                                      for cell, load, c in rows],
                          "only_a": only_a, "only_b": only_b,
                          "regressions": ([{"cell": cell, "load": load, **c.to_dict()}
                                           for cell, load, c in rows if c in bad]
                                          if args.fail_on_regression is not None else None)},
                         indent=1))
    elif args.format == "markdown":
        print(markdown(rows, title) + (f"\n{SATURATION_NOTE}\n" if flagged else "")
              + "".join(f"\n- note: {t}" for t in notes))
    else:
        for text in notes:
            console.print(f"note: {text}", style="yellow", markup=False)
        print_table(console, _table(rows, title))     # wider rather than crop a verdict
        called = [c for _, _, c in rows if c.verdict not in (WITHIN, UNKNOWN)]
        console.print(f"{len(called)} of {len(rows)} figures changed beyond the noise "
                      f"(their repeats do not overlap); the rest are within noise or have "
                      f"one repeat", markup=False)
        if flagged:
            console.print(SATURATION_NOTE, markup=False)
        if only_a or only_b:
            console.print(f"only in A: {', '.join(only_a) or '-'}; only in B: "
                          f"{', '.join(only_b) or '-'}", markup=False)
    if args.fail_on_regression is not None and bad:
        for cell, load, c in rows:
            if c in bad:
                print(f"regression: {cell} {load} {c.metric} {_verdict(c)} "
                      f"(>= {args.fail_on_regression:g}%)", file=sys.stderr)
        return EXIT_THRESHOLDS
    return EXIT_OK
