"""The command line: `wirebench ...` and `python bench.py ...` run this.

    python bench.py scenarios/embedding.yaml            run a scenario
    python bench.py scenarios/lab.yaml --quick          a fast smoke version of it
    python bench.py SCENARIO --protocols rest-h1,grpc   a subset of its protocols
    python bench.py SCENARIO --dry-run                  print the expanded plan only
    python bench.py SCENARIO --wide                     the final table with every column
    python bench.py SCENARIO --cluster auto             load workers on a Ray cluster
    python bench.py --list-protocols                    protocol ids and implementations
    python bench.py compare RUN_A RUN_B                 two result dirs side by side
    python bench.py report RUN_DIR                      redraw report.md and report.html

(`wirebench` is the same command once the package is installed.)

Exit codes (base.errors): 0 ok, 1 errors over the limit (or a server, worker or the lab
failed), 2 bad scenario, arguments or missing privileges, 99 thresholds failed,
130 interrupted (partial results kept, marked). Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from base.errors import (EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_THRESHOLDS, BadInput,
                         Interrupted, WirebenchError)
from harness.scenario import load_scenario, quick, with_protocols


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", help="a scenario YAML file (see scenarios/README.md)")
    p.add_argument("--out", default="results",
                   help="directory for result folders (default: results/ here)")
    p.add_argument("--protocols", help="comma-separated subset of the scenario's protocols")
    p.add_argument("--quick", action="store_true", help="a fast smoke version of the scenario")
    p.add_argument("--dry-run", action="store_true", help="print the expanded plan and exit")
    p.add_argument("--list-protocols", action="store_true", help="list protocol ids and exit")
    p.add_argument("--wide", action="store_true",
                   help="the final table with every column (default: what fits 100 columns)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the load workers as actors on this Ray cluster (auto, local, "
                        "host:port or ray://host:port); the scenario's cluster.workers, or "
                        "its workers, actors (needs pip install -e '.[cluster]')")
    p.add_argument("--loopback", action="store_true",
                   help="stay on loopback even as root (no network namespaces, so no wire "
                        "bytes)")
    args = p.parse_args(argv)
    if not args.scenario and not args.list_protocols:
        p.error("a scenario file is required (e.g. scenarios/embedding.yaml)")
    return args


def with_cluster(scenario, address: str):
    """The scenario with its load workers on the Ray cluster at `address` (--cluster)."""
    import dataclasses

    from harness.scenario.cluster import Cluster, ray_missing
    missing = ray_missing()
    if missing:
        raise BadInput(f"--cluster: {missing}")
    if scenario.network is not None:
        raise BadInput("--cluster: the network lab runs this host's workers behind an "
                       "emulated link; a scenario with network: cannot use a cluster")
    workers = scenario.cluster.workers if scenario.cluster else max(2, scenario.workers)
    return dataclasses.replace(scenario, cluster=Cluster("ray", address, workers))


def out_problem(out: Path) -> str | None:
    """Why result folders cannot be made under `out` (checked before anything starts)."""
    if out.exists() and not out.is_dir():
        return "it exists and is not a directory"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create it ({exc.strerror or exc})"
    if not os.access(out, os.W_OK | os.X_OK):
        return "it is not writable"
    return None


def list_protocols() -> int:
    from harness.run.implementations import alternatives, client_engine, server_impl
    from base.protocols import PROTOCOLS
    print("# id        kind    transport                    default server / client engine; "
          "cells: id[@server][+client]")
    for pid, s in PROTOCOLS.items():
        kind = "stream" if s.streaming else "unary"
        print(f"{pid:<12} {kind:<7} {s.transport:<28} {server_impl(pid)} / "
              f"{client_engine(pid)};  {alternatives(pid)}")
    return EXIT_OK


def dry_run(scenario) -> int:
    from harness.scenario import expand_plan
    plan = expand_plan(scenario)
    load = scenario.load
    per_point = (f"{load.requests} requests" if load.requests else f"{load.duration_s:g} s")
    print(f"scenario {scenario.name} ({scenario.source}): "
          f"{' + '.join(scenario.workload_types)} workload, "
          f"{len(plan)} load points, {per_point} each after {scenario.warmup.requests} warmup, "
          f"{scenario.workers} worker(s), connection policy {scenario.connection.policy}")
    if scenario.network is not None:
        net = scenario.network
        print(f"network lab: backend {net.backend}, congestion control "
              f"{net.congestion_control}, seed {net.seed}, {len(net.links)} link variant(s)")
    for p in plan:
        load = (f"concurrency {p.concurrency}" if p.load_kind == "closed" else
                f"rate {p.rate:g}/s" if p.load_kind == "open" else
                f"sweep {scenario.load.rate_min:g}..{scenario.load.rate_max:g}/s "
                f"(<= {scenario.load.steps} probes)")
        conn = f"  connections {p.connection.label}" if p.connection else ""
        link = f"  link {p.link.name}" if p.link else ""
        tls = f"  tls {p.tls_version}" if p.tls_version else ""
        dns = f"  dns cache {'on' if p.dns_cache else 'off'}" if p.dns_cache is not None else ""
        resume = f"  resumption {p.resumption}" if p.resumption else ""
        print(f"  repeat {p.repeat + 1}  {p.protocol:<12} {load}{conn}{tls}{dns}{resume}{link}")
    return EXIT_OK


def run(scenario, out: Path, loopback: bool = False, wide: bool = False) -> int:
    from harness.report.console import (RichProgress, console, final_tables, print_table,
                                        table_console, wide_console)
    from harness.report.conclusion import conclusions
    from harness.report.markdown import render
    from harness.report.pipeline import policy_lines
    from harness.report.capacity import capacity_lines
    from harness.report.html.page import write_html
    from harness.report.questions import METHOD, verdict_lines
    from harness.report.verdict import check
    from harness.run.runner import Runner

    runner = Runner(scenario, out, None, loopback=loopback)
    for killed in runner.killed_runs:
        console.print(f"note: {killed} was killed mid-run; its summary now says "
                      f"status \"killed\" (incomplete)", style="yellow", markup=False)
    code, failure = EXIT_OK, None
    try:
        with RichProgress() as progress:
            runner.progress = progress
            runner.run()
    except Interrupted:
        code, failure = EXIT_INTERRUPTED, "interrupted"
    except WirebenchError as exc:       # what was measured is still written below
        code, failure = exc.exit_code, str(exc)
    rows = runner.rows()
    lines, failed, over = check(scenario, rows)
    summary = json.loads((runner.out / "summary.json").read_text())
    (runner.out / "report.md").write_text(render(summary, lines, runner.out))
    try:
        write_html(runner.out)
    except Exception as exc:   # noqa: BLE001 - a figure must not cost the run its results
        console.print(f"report.html not written ({type(exc).__name__}: {exc}); "
                      f"summary.json and report.md are", style="yellow", markup=False)
    # The verdict comes first (a winner per question with its margin, or "no
    # difference"), then what else the run shows; the tables that back it follow.
    verdict = verdict_lines(rows, scenario.groups)
    if verdict:
        table_console.print("Verdict", style="bold")
        for line in verdict:
            table_console.print(f"  {line}", markup=False, highlight=False)
        table_console.print(f"  {METHOD}", markup=False, highlight=False, style="dim")
    if summary.get("capacity"):
        for line in capacity_lines(summary["capacity"], summary["scenario"].get("slo")):
            table_console.print(line, markup=False, highlight=False)
    for line in conclusions(rows, scenario.groups, rankings=not verdict):
        table_console.print(line.replace("**", ""), markup=False, highlight=False)
    policies = policy_lines([r for r in rows if r.get("pipeline_ms")])
    if policies:    # a pipeline's answer: which connection and DNS policy saves what
        table_console.print("Where a user request's seconds go (report.md: every phase)",
                            style="bold")
        for line in policies:
            table_console.print(line.replace("**", ""), markup=False, highlight=False)
    for kind in scenario.workload_types:      # one table per workload: their columns differ
        mine = [r for r in rows if r["workload"] == kind]
        if mine:
            for table in final_tables(mine, kind == "stream", wide=wide):
                print_table(wide_console if wide else table_console, table)
    for text in over:
        console.print(f"errors over the limit: {text}", style="red", markup=False)
    for text in failed:
        console.print(f"threshold failed: {text}", style="yellow", markup=False)
    if failure:
        console.print(f"run {runner.status}: {failure}", style="red", markup=False)
    for text in runner.failures:
        console.print(f"point failed: {text.splitlines()[0]}", style="red", markup=False)
    if runner.failures and not code:
        code = EXIT_RUN_FAILED
    console.print(f"results: {runner.out}")
    if code:
        return code
    return EXIT_RUN_FAILED if over else EXIT_THRESHOLDS if failed else EXIT_OK


def rerender(argv: list[str]) -> int:
    """`report RUN_DIR`: draw report.md and report.html again from a finished run."""
    from harness.report.html.page import write_html
    from harness.report.markdown import render
    from harness.report.verdict import check
    from harness.scenario.loading import parse_scenario

    p = argparse.ArgumentParser(prog="python bench.py report",
                                description="Render report.md and report.html again from "
                                            "a results folder's summary.json.")
    p.add_argument("run_dir", help="a results folder (results/<stamp>-<name>)")
    run_dir = Path(p.parse_args(argv).run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise BadInput(f"report {run_dir}: no summary.json there (not a results folder)")
    try:
        summary = json.loads(path.read_text())
        scenario = parse_scenario(summary["scenario"], str(path))
    except (ValueError, KeyError) as exc:
        raise BadInput(f"report {run_dir}: summary.json unreadable ({exc})") from None
    lines, _, _ = check(scenario, summary["rows"])
    (run_dir / "report.md").write_text(render(summary, lines, run_dir))
    print(f"{run_dir / 'report.md'}\n{write_html(run_dir)}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the command; every WirebenchError ends as one line and its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except WirebenchError as exc:
        print(f"{exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:    # the reader went away (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "compare":
        from harness.report.compare import main as compare_main
        return compare_main(argv[1:])
    if argv and argv[0] == "report":
        return rerender(argv[1:])
    args = parse_args(argv)
    if args.list_protocols:
        return list_protocols()
    scenario = load_scenario(args.scenario)
    if args.protocols:
        scenario = with_protocols(scenario, [p.strip() for p in args.protocols.split(",")])
    if args.cluster:
        scenario = with_cluster(scenario, args.cluster)
    if args.quick:
        scenario = quick(scenario)
    if args.dry_run:
        return dry_run(scenario)
    problem = out_problem(Path(args.out))
    if problem:
        raise BadInput(f"--out {args.out}: {problem}")
    if scenario.network is not None:
        from harness.netlab.netns import lab_refusal
        refusal = lab_refusal(args.loopback)
        if refusal:
            raise BadInput(f"cannot run {args.scenario}: {refusal}")
    return run(scenario, Path(args.out), args.loopback, args.wide)
