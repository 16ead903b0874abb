"""The terminal: a live progress bar per protocol x load point, and the final table."""

from __future__ import annotations

import io
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table
from rich.text import Text

from harness.report.tables import (fastest_first, fmt, load_label, rate_figure, rate_text,
                                   swept_label)
from harness.measure.results import PointResult
from harness.measure.saturation import FLAGS, STEAL_NOISY, bound_words
from harness.run.runner import ProgressSink
from harness.scenario import PlanPoint

# Progress goes to stderr, the final table to stdout. Off a terminal (CI, a pipe, a
# file) the output is plain: no colour, no cursor moves, ASCII borders, and 100 columns
# (rich would guess 80); `--wide` gives the full table room instead.
COLUMNS = 100
WIDE_COLUMNS = 220
console = Console(stderr=True)
table_console = Console(width=None if sys.stdout.isatty() else COLUMNS,
                        color_system="auto" if sys.stdout.isatty() else None)
wide_console = Console(width=WIDE_COLUMNS, color_system=table_console.color_system)
# A percentile's tail is read from the samples beyond it: under this many, say so.
TAIL_SAMPLES = 100


def _this_repeat(row: dict[str, Any]) -> tuple[Any, Any, bool]:
    """The p50 and rate of the repeat that just ended (a "#2" line showing the figures
    merged over repeats so far would read as that repeat's own), and whether they are
    that repeat's alone (errors are only counted over all repeats so far)."""
    p50s = row.get("latency_p50_per_repeat_ms") or []
    rates = row.get("throughput_per_repeat_rps") or []
    if len(rates) > 1 and len(p50s) == len(rates):      # every repeat measured a latency
        return p50s[-1], rates[-1], True
    return row["latency_p50_ms"], row["throughput_rps"], False


class RichProgress(ProgressSink):
    """A bar for the load point under way and one for the whole run (with the time left);
    a finished point leaves one line above them. Kept live, 165 points' bars would
    outgrow the terminal, and rich would hide the one under way."""

    def __init__(self, out: Console = console) -> None:
        self.bar = Progress(TextColumn("[bold]{task.description:<28}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[note]}"), console=out)
        self.run_task: Any = None
        self.current: Any = None        # the point under way's bar

    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def plan(self, points: int, out: Path) -> None:
        self.bar.console.print(f"{points} load points; results in {out}", style="dim",
                               markup=False)
        self.run_task = self.bar.add_task("all load points", total=points, note="")

    def start(self, point: PlanPoint, total: int | None) -> Any:
        load = f"c={point.concurrency}" if point.load_kind == "closed" else rate_text(point.rate)
        rep = f" #{point.repeat + 1}" if point.repeat else ""
        conn = f" conn={point.connection.label}" if point.connection else ""
        link = f" [{point.link.name}]" if point.link else ""
        dns = {None: "", True: " dns-cache", False: " no-dns-cache"}[point.dns_cache]
        dns += f" resume={point.resumption}" if point.resumption else ""
        # escape: the description is rich markup, where "[loss 1%]" would be a style tag
        self.current = self.bar.add_task(
            escape(f"{point.protocol} {load}{conn}{dns}{rep}{link}"), total=total, note="")
        return self.current

    def update(self, task: Any, done: int) -> None:
        self.bar.update(task, completed=done)

    def finish(self, task: Any, result: PointResult) -> None:
        row = result.row("")
        p50, rate, own = _this_repeat(row)
        so_far = " over the repeats so far" if own else ""
        note = (f"p50 {fmt(p50)} ms  {rate_figure(rate)} rps"
                + (f"  [red]{row['errors']} errors{so_far}[/red]" if row["errors"] else "")
                + (f"  [yellow]host steal {row['host_steal']:.0%}"
                   f"{' (the highest repeat so far)' if own else ''}"
                   "[/yellow]" if row.get("host_noisy") else ""))
        t = self._task(task)
        done = int(t.total or row["n"])
        self.bar.console.print(f"[bold]{t.description:<28}[/bold] {done}/{done} "
                               f"{_clock(t.elapsed)}  {note}", highlight=False,
                               soft_wrap=self._unwrapped)
        self._retire(task)

    def point_done(self) -> None:
        if self.run_task is None:
            return
        self.bar.advance(self.run_task)
        t = self._task(self.run_task)
        if t.completed and t.total and t.elapsed:
            left = t.elapsed / t.completed * (t.total - t.completed)
            self.bar.update(self.run_task, note=f"about {_clock(left)} left" if left else "")

    def warning(self, message: str) -> None:
        self.bar.console.print(f"warning: {message}", style="yellow", markup=False)

    def note(self, message: str) -> None:
        self.bar.console.print(message, markup=False, highlight=False,
                               soft_wrap=self._unwrapped)

    @property
    def _unwrapped(self) -> bool:
        """In a log file (no terminal to fit) a point's or a sweep's line stays one line."""
        return not self.bar.console.is_terminal

    def failed(self, point: PlanPoint, message: str) -> None:
        self._retire(self.current)
        first = message.strip().splitlines()[0] if message.strip() else "failed"
        self.bar.console.print(f"[red]{escape(point.protocol)} failed: {escape(first)}[/red] "
                               "(the run goes on)")

    def _task(self, task: Any) -> Any:
        return next(t for t in self.bar.tasks if t.id == task)

    def _retire(self, task: Any) -> None:
        if task is not None and any(t.id == task for t in self.bar.tasks):
            self.bar.remove_task(task)
        if task == self.current:
            self.current = None


def _clock(seconds: float | None) -> str:
    """h:mm:ss, as rich's elapsed column shows it."""
    return str(timedelta(seconds=int(seconds or 0)))


def tail_is_thin(r: dict[str, Any], q: float = 0.99) -> bool:
    """Whether the row's p99 rests on fewer than TAIL_SAMPLES samples beyond it."""
    return (r.get("n") or 0) * (1 - q) < TAIL_SAMPLES


def _note(r: dict[str, Any]) -> str:
    """Short flags for the compact table (the caption spells them out)."""
    parts = [flag for flag, _, key in FLAGS if r.get(key)]
    if r.get("host_noisy"):
        parts.append("STEAL")
    if r.get("errors"):
        parts.append(f"{r['errors']}err")
    if r.get("failed"):
        parts.append("FAIL")
    return " ".join(parts)


def print_table(con: Console, table: Table) -> None:
    """Print a table at the console's width, or wider when its figures need more: rich
    would crop the last columns (the saturation flags among them) rather than the title.
    The caption is printed apart, as wide as the table within the console: rich draws
    it at the table's width, which may overflow the console by the table's edge (and
    the console crops it)."""
    width, caption = con.width, table.caption
    con.width = _least_fitting_width(table, width)     # print(width=) could only narrow it
    table.caption = None
    try:
        con.print(table)
        if caption:     # as wide as the table, within the console
            fit = min(con.width, Measurement.get(con, con.options, table).maximum)
            con.print(caption, style="table.caption", justify="left", highlight=False,
                      width=fit)
    finally:
        con.width, table.caption = width, caption


def _least_fitting_width(table: Table, start: int) -> int:
    """The least width from `start` at which every word of every cell shows whole (rich's
    own measure stops at the console's width, so it is found by drawing)."""
    want = Counter(word for column in table.columns
                   for cell in [column.header, *column.cells]
                   for word in Text.from_markup(str(cell)).plain.split())
    title, caption = table.title, table.caption
    table.title = table.caption = None
    try:
        for width in range(start, start + 200):
            probe = Console(width=width, file=io.StringIO(), record=True, color_system=None)
            probe.print(table)
            shown = Counter(probe.export_text().split())
            if all(shown[word] >= n for word, n in want.items()):
                return width
        return start
    finally:
        table.title, table.caption = title, caption


def final_tables(rows: list[dict[str, Any]], streaming: bool, wide: bool = False
                 ) -> list[Table]:
    """The run's tables: one per link when the run has links (in 100 columns there is no
    room for a link's name beside every row, and cut short the rows of two links read
    alike), else one. The key to the columns is under the last."""
    links = list(dict.fromkeys(r["network"] for r in rows if r.get("link")))
    if wide or not links:
        return [final_table(rows, streaming, wide)]
    tables = [final_table([r for r in rows if r.get("link") and r["network"] == link],
                          streaming, link=link) for link in links]
    plain = [r for r in rows if not r.get("link")]
    if plain:
        tables.append(final_table(plain, streaming))
    for t in tables[:-1]:
        t.caption = None
    return tables


def final_table(rows: list[dict[str, Any]], streaming: bool, wide: bool = False,
                link: str | None = None) -> Table:
    """The run's table: what a decision needs in 100 columns where its figures fit
    (print_table widens it where they do not; the rest is in report.md), or every
    column with `wide`. With `link`, the rows of that link only,
    named in the title instead of on every row."""
    if wide:
        return wide_table(rows, streaming)
    # A DNS step every row shares is said once, in the title, not on every row.
    caches = {r.get("dns_cache") for r in rows}
    one_dns = caches.pop() if len(caches) == 1 else None
    where = [f"on link '{link}'"] if link else []
    if one_dns is not None:
        where.append("DNS step, resolver cache " + ("on" if one_dns else "off"))
    title = "wirebench: protocols side by side (per load point, fastest first)"
    table = Table(title="\n".join([title, ", ".join(where)] if where else [title]),
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  safe_box=True, caption_justify="left")
    # A stream's question is its first token and its gaps; a request's is its latency.
    slo = any(r.get("goodput_fraction") is not None for r in rows)
    cols = (["cell", "load", "n", "ttft p50", "itl p99", "p50 ms"] if streaming else
            ["cell", "load", "n", "p50 ms", "p99 ms", "good%" if slo else "ovh p50", "rps"])
    cols += ["B/req", "cpu c/s", "note"]
    ordered = fastest_first(rows, "ttft_p50_ms" if streaming else "latency_p50_ms")
    label = swept_label(rows)
    loads = [label({**r, "link": None if link else r.get("link")}) for r in ordered]
    # A long load label wraps (at 14 columns or more) rather than crop the figures; the
    # flags never wrap: a flag on the line under a row reads as the next row's.
    notes = [_note(r) for r in ordered]
    widths = {"note": max([7, *map(len, notes)]), "load": min(14, max(map(len, loads), default=4))}
    for c in cols:
        table.add_column(c, justify="left" if c in ("cell", "load", "note") else "right",
                         no_wrap=c != "load", overflow="fold", min_width=widths.get(c))
    thin = flagged = payload_only = False
    for r, load, note in zip(ordered, loads, notes):
        p99 = fmt(r["latency_p99_ms"], 2)
        if not streaming and tail_is_thin(r) and r.get("latency_p99_ms") is not None:
            p99, thin = p99 + "~", True
        if streaming:
            cells = [r["cell"], load, fmt(r["n"]), fmt(r["ttft_p50_ms"], 2),
                     fmt(r["itl_p99_ms"], 2), fmt(r["latency_p50_ms"], 2)]
        else:
            third = (fmt(100 * r["goodput_fraction"], 1) if slo and r.get("goodput_fraction")
                     is not None else "-" if slo else fmt(r["overhead_p50_ms"], 2))
            cells = [r["cell"], load, fmt(r["n"]), fmt(r["latency_p50_ms"], 2), p99, third,
                     rate_figure(r["throughput_rps"])]
        cpu = f"{fmt(r['client_cpu_ms_per_req'], 2)}/{fmt(r['server_cpu_ms_per_req'], 2)}"
        flagged = flagged or bool(note)
        down = fmt(r.get("wire_down_bytes") or r["payload_down_bytes"], 0)
        if r.get("wire_down_bytes") is None and r.get("payload_down_bytes") is not None:
            down, payload_only = down + "p", True      # not comparable with a wire figure
        cells += [down, cpu, note]
        table.add_row(*map(escape, cells))     # a link's "[name]" is not markup
    captions = [("p50 ms: the whole stream; " if streaming else
                 f"good%: requests within the SLO ({'; '.join(rows[0]['slo'])}); " if slo else
                 "ovh: latency minus server time; ")
                + "B/req: bytes down per request (wire where measured, else payload); cpu: "
                  "client/server ms per request; every column: report.md or --wide"]
    if flagged:
        captions.append("note: SRV / CLI / CPU server core / client side (a core, late "
                        "starts or the lab's link emulator) / machine saturated (never "
                        "ranked: a library or this machine, not the protocol); Nerr errors; "
                        "FAIL the point failed")
    if any(r.get("host_noisy") for r in rows):
        captions.append(f"STEAL: the hypervisor took >= {STEAL_NOISY:.0%} of this machine's "
                        "CPU time during the point (other guests of the host, not this run): "
                        "its figures are inflated by a varying amount; rerun it")
    if payload_only:
        captions.append("p: payload bytes only, the wire was not measured for this row "
                        "(not comparable with the wire figures beside it)")
    if thin:
        captions.append(f"~ p99 rests on fewer than {TAIL_SAMPLES} samples beyond it "
                        f"(n < {int(TAIL_SAMPLES / 0.01):,}): indicative only")
    table.caption = "\n".join(captions)
    return table


def wide_table(rows: list[dict[str, Any]], streaming: bool) -> Table:
    """Every column, in run order (`--wide`)."""
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
                 rate_figure(r["throughput_rps"])]
        if streaming:
            cells += [fmt(r["ttft_p50_ms"], 2), fmt(r["itl_p99_ms"], 2),
                      fmt(r["tpot_p50_ms"], 2), fmt(r["owd_p50_ms"], 3)]
        else:
            cells += [fmt(r["server_time_p50_ms"], 3), fmt(r["overhead_p50_ms"], 3),
                      fmt(r["decode_p50_ms"], 3)]
        cells += [fmt(r["payload_up_bytes"], 0), fmt(r["payload_down_bytes"], 0),
                  fmt(r["wire_down_bytes"], 0),
                  fmt(r["client_cpu_ms_per_req"], 3), fmt(r["server_cpu_ms_per_req"], 3),
                  bound_words(r)]
        table.add_row(*map(escape, cells))     # a link's "[name]" is not markup
    return table
