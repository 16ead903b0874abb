"""The terminal: a live progress bar per protocol x load point, and the final table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table

from harness.report.tables import fmt, load_label
from harness.measure.results import PointResult
from harness.run.runner import ProgressSink
from harness.scenario import PlanPoint

# Progress goes to stderr, the final table to stdout; off a terminal (CI, a pipe)
# rich would squeeze tables into 80 columns, which makes them unreadable.
console = Console(stderr=True)
table_console = Console(width=None if sys.stdout.isatty() else 180)


class RichProgress(ProgressSink):
    def __init__(self) -> None:
        self.bar = Progress(TextColumn("[bold]{task.description:<28}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[note]}"), console=console)

    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def plan(self, points: int, out: Path) -> None:
        console.print(f"[dim]{points} load points; results in {out}[/dim]")

    def start(self, point: PlanPoint, total: int | None) -> Any:
        load = f"c={point.concurrency}" if point.load_kind == "closed" else f"{point.rate:g}/s"
        rep = f" #{point.repeat + 1}" if point.repeat else ""
        conn = f" conn={point.connection.label}" if point.connection else ""
        link = f" [{point.link.name}]" if point.link else ""
        dns = {None: "", True: " dns-cache", False: " no-dns-cache"}[point.dns_cache]
        dns += f" resume={point.resumption}" if point.resumption else ""
        return self.bar.add_task(f"{point.protocol} {load}{conn}{dns}{rep}{link}", total=total,
                                 note="")

    def update(self, task: Any, done: int) -> None:
        self.bar.update(task, completed=done)

    def finish(self, task: Any, result: PointResult) -> None:
        row = result.row("")
        note = (f"p50 {fmt(row['latency_p50_ms'])} ms  {fmt(row['throughput_rps'], 0)} rps"
                + (f"  [red]{row['errors']} errors[/red]" if row["errors"] else ""))
        self.bar.update(task, completed=self.bar.tasks[task].total or row["n"], note=note)


    def warning(self, message: str) -> None:
        console.print(f"[yellow]warning: {message}[/yellow]")

    def failed(self, point: PlanPoint, message: str) -> None:
        first = message.strip().splitlines()[0] if message.strip() else "failed"
        console.print(f"[red]{point.protocol} failed: {first}[/red] (the run goes on)")


def bound_note(r: dict[str, Any]) -> str:
    """The row's saturation flags: such a row measures a library, not a protocol."""
    return " ".join(f for f, key in (("server-bound", "server_bound"),
                                     ("client-bound", "client_bound")) if r.get(key))


def final_table(rows: list[dict[str, Any]], streaming: bool) -> Table:
    table = Table(title="wirebench: protocols side by side", header_style="bold")
    cols = ["protocol", "load", "n", "err", "p50 ms", "p99 ms", "rps"]
    if streaming:
        cols += ["ttft p50", "itl p99", "tpot p50", "owd p50"]
    else:
        cols += ["server p50", "overhead p50", "decode p50"]
    cols += ["payload up B", "payload down B", "wire down B", "client CPU ms", "server CPU ms",
             "note"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("protocol", "load", "note") else "right")
    for r in rows:
        cells = [r["cell"], load_label(r), fmt(r["n"]), fmt(r["errors"]),
                 fmt(r["latency_p50_ms"], 3), fmt(r["latency_p99_ms"], 3),
                 fmt(r["throughput_rps"], 0)]
        if streaming:
            cells += [fmt(r["ttft_p50_ms"], 2), fmt(r["itl_p99_ms"], 2),
                      fmt(r["tpot_p50_ms"], 2), fmt(r["owd_p50_ms"], 3)]
        else:
            cells += [fmt(r["server_time_p50_ms"], 3), fmt(r["overhead_p50_ms"], 3),
                      fmt(r["decode_p50_ms"], 3)]
        cells += [fmt(r["payload_up_bytes"], 0), fmt(r["payload_down_bytes"], 0),
                  fmt(r["wire_down_bytes"], 0),
                  fmt(r["client_cpu_ms_per_req"], 3), fmt(r["server_cpu_ms_per_req"], 3),
                  bound_note(r)]
        table.add_row(*cells)
    return table
