"""Harness fidelity: the harness's own HTTP clients against native load tools.

    python benchmarks/fidelity.py [--quick] [--out DIR] [--duration S] [--repeats N]

DESIGN.md section 4: a harness that measures itself is worthless. This benchmark (not
a test) starts the project's own servers (uvicorn HTTP/1.1; hypercorn HTTP/2 served as
cleartext h2c, so TLS is out of the comparison on both sides) and drives each one in
turn with a native tool and with the harness, sending the same request:

  HTTP/1.1  wrk -t1 -c C          vs  `rest-h1` with C users, one keep-alive connection each
  HTTP/2    h2load -t1 -c1 -m C   vs  `rest-h2` with C users on one multiplexed connection

at concurrency 1 and 16, for two requests: "small" (1 input x 8 dims: the protocol
engine alone) and "embed" (8 inputs x 1536 float32 as JSON floats, ~154 KB per
response: the realistic one). The harness runs as the product runs: a
`python -m harness.run.worker` process fed a LoadJob, warmed up, told "go", and read back
(harness/run/runner.py `run_point`). Each native/harness pair runs interleaved `--repeats`
times (order alternating) and the table reports medians; ratios are taken within a
pair, so slow drift of a shared machine cancels out.

The harness's latency runs to the *decoded* vectors (DESIGN section 4); the native
tools never parse the body. For "embed" the harness's JSON decode (~0.8 ms with orjson)
is therefore inside its latency and its CPU; it is reported on its own, never
subtracted.

With 2 or more CPUs the server is pinned to one CPU and every client (native or
harness) to another (`--no-pin` turns this off), as ANCHORS.md measured.

`--engines python,curl` measures each harness client engine the harness has against
the same native runs; `libcurl` in that list adds "libcurl alone" (curl_alone.py: pycurl
with no wirebench code around it), `libcurl-c` adds "libcurl in C" (libcurl_loop.c, the
same loop in C on the same libcurl; needs a C compiler), `native+N` adds the native tool
itself with N us of busy client CPU added per request (slowed_native.c, preloaded; needs a
C compiler): what a client that much slower than wrk / h2load reaches; `native+0` is the
A/A control, the native tool against itself, whose spread says what 5% this run can
resolve. `--protocols caddy-http/1.1,caddy-h2c` runs the same against the Caddy front
(servers/http/caddy_server.py) of the default scenario.
`--variant before=/path/to/other/checkout` (repeatable) also runs
every engine from another tree's harness, interleaved in the same pairs: a before/after
of a client change under the same machine conditions.

Installs nothing: it needs `wrk` and `h2load` on PATH (Debian/Ubuntu:
`apt-get install -y wrk nghttp2-client`; macOS: `brew install wrk nghttp2`).
Writes `<out>/fidelity-<UTC timestamp>/fidelity.json` and `fidelity.md`
(default out: results/) and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))    # the repository

import orjson

from clients.base import Target
from harness.run.environment import environment
from servers.launcher import start_server

from fidelity_measure import Pinning, Run
from fidelity_report import Point, diagnostics, markdown, noise_warning, table
from fidelity_setup import (DEFAULT_PROTOCOLS, FLOOR_P50_RATIO, FLOOR_RPS_RATIO,
                            H2C_KINDS, INSTALL_HINT, LIBCURL_REFERENCES, PROTOCOLS, ROOT, SIZES,
                            TARGET_P50_RATIO, TARGET_RPS_RATIO, added_client_us,
                            reference_label, request_body)
from fidelity_tools import Harness, Native, engine_field, has_path


def check_tools() -> dict[str, str]:
    missing = [t for t in ("wrk", "h2load") if shutil.which(t) is None]
    if missing:
        print(f"fidelity: {', '.join(missing)} not found on PATH.\n{INSTALL_HINT}",
              file=sys.stderr)
        raise SystemExit(2)
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    h2_v = subprocess.run(["h2load", "--version"], capture_output=True, text=True)
    return {"wrk": (wrk_v.stdout + wrk_v.stderr).splitlines()[0].split(" Copyright")[0].strip(),
            "h2load": h2_v.stdout.strip()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 s runs instead of 5 s")
    p.add_argument("--out", type=Path, default=ROOT / "results",
                   help="parent directory of fidelity-<UTC timestamp>/ (default results/)")
    p.add_argument("--duration", type=int, help="seconds per run (default 5, --quick 2)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved pairs per point")
    p.add_argument("--protocols", default=",".join(DEFAULT_PROTOCOLS),
                   help=f"comma list of {', '.join(PROTOCOLS)} (default "
                        f"{','.join(DEFAULT_PROTOCOLS)}; caddy-*: the Caddy front)")
    p.add_argument("--sizes", default=",".join(SIZES), help=f"comma list of {', '.join(SIZES)}")
    p.add_argument("--concurrency", default="1,16", help="comma list (default 1,16)")
    p.add_argument("--engines", default="python",
                   help="harness client engines to compare, comma list (default python; "
                        "curl where the harness has it); ENGINE:PATH forces a client path "
                        "(auto, async, blocking, sequential; harness.run.load.loadgen), e.g. python:async for "
                        "the asyncio path beside the default; libcurl and libcurl-c add "
                        "libcurl with no wirebench code around it, through pycurl and in C; "
                        "native+N the native tool with N us of client CPU added per request "
                        "(native+0: the A/A control)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR",
                   help="also run every engine from the harness in DIR (another checkout), "
                        "labelled LABEL, in the same interleaved pairs (repeatable)")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and clients to CPUs")
    a = p.parse_args(argv)
    a.duration = a.duration or (2 if a.quick else 5)
    a.protocols = [x for x in a.protocols.split(",") if x]
    a.sizes = [x for x in a.sizes.split(",") if x]
    a.concurrency = [int(x) for x in a.concurrency.split(",") if x]
    a.engines = [x for x in a.engines.split(",") if x]
    for e in a.engines:
        engine_field(e)             # fails early, in words, if the harness lacks it
    variants = []
    for v in a.variant:
        label, sep, directory = v.partition("=")
        root = Path(directory).resolve()
        if not sep or not label or not any((root / "harness" / sub / "worker.py").is_file()
                                           for sub in ("run", ".")):
            p.error(f"--variant wants LABEL=DIR with DIR a wirebench tree, not {v!r}")
        variants.append((label, root))
    a.variant = variants
    for x in a.protocols:
        if x not in PROTOCOLS:
            p.error(f"unknown protocol {x!r}")
    for x in a.sizes:
        if x not in SIZES:
            p.error(f"unknown size {x!r}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = check_tools()
    pin = Pinning.choose(not args.no_pin)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"fidelity-{stamp}"
    meta = {"started_utc": dt.datetime.now(dt.timezone.utc).isoformat(), "tools": tools,
            "duration_s": args.duration, "repeats": args.repeats,
            "pinning": asdict(pin), "environment": environment(),
            "targets": {"rps_ratio_min": TARGET_RPS_RATIO, "p50_ratio_max": TARGET_P50_RATIO,
                        "floor_rps_ratio_min": FLOOR_RPS_RATIO,
                        "floor_p50_ratio_max": FLOOR_P50_RATIO},
            "request_bytes": {s: len(request_body(s)) for s in SIZES},
            "engines": args.engines,
            "variants": {label: str(root) for label, root in args.variant},
            "h2_mode": "h2c (cleartext HTTP/2, prior knowledge) for h2load and rest-h2",
            "python": platform.python_version()}
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="wirebench-fidelity-") as tmp:
        work = Path(tmp)
        bodies = {}
        for s in args.sizes:
            bodies[s] = work / f"{s}.json"
            bodies[s].write_bytes(request_body(s))
        native = Native(work, pin)
        harnesses = {"": Harness(pin)}
        harnesses.update((label, Harness(pin, root, label)) for label, root in args.variant)
        runs = [(e, v) for v in harnesses for e in args.engines     # harness runs per pair
                if reference_label(e) is None or not v]
        for proto in args.protocols:
            client_id, kind, tool = PROTOCOLS[proto]
            h2c = kind in H2C_KINDS
            shown = f"{client_id}@caddy" if kind.startswith("caddy") else client_id
            extra = ["--h2c-port", "0"] if h2c else None
            with start_server(kind, extra=extra) as server:
                pin.pin_server(server)
                port = server.info["h2c_port"] if h2c else server.port
                target = Target(port=port, **({"tls": False} if h2c else {}))
                url = f"http://127.0.0.1:{port}/v1/embeddings"
                run_native = native.wrk if tool == "wrk" else native.h2load
                # Warm the server (imports, first-request paths); not recorded.
                run_native(url, bodies[args.sizes[0]], 1, 1, server)
                for size in args.sizes:
                    for conc in args.concurrency:
                        shared: list[Run] = []        # one native run per repeat, for all
                        group = {(e, v): Point(proto, size, conc, e, v, shown,
                                               native=shared)
                                 for e, v in runs if has_path(e, client_id, target, conc)}
                        points += group.values()
                        for rep in range(args.repeats):
                            order: list = ["native", *group]
                            if rep % 2:
                                order.reverse()
                            for who in order:
                                if who == "native":
                                    r = run_native(url, bodies[size], conc, args.duration,
                                                   server)
                                    shared.append(r)
                                else:
                                    engine, variant = who
                                    added_us = added_client_us(engine)
                                    if added_us is not None:
                                        r = run_native(url, bodies[size], conc, args.duration,
                                                       server, added_us=added_us)
                                    elif engine in LIBCURL_REFERENCES:
                                        r = native.libcurl(engine, url, bodies[size], conc,
                                                           args.duration, server,
                                                           "1.1" if client_id == "rest-h1"
                                                           else "2")
                                    else:
                                        r = harnesses[variant].run(client_id, target, size,
                                                                   conc, args.duration,
                                                                   server, engine=engine)
                                    group[who].harness.append(r)
                                print(f"  {proto:8} {size:5} c={conc:<3} rep {rep + 1} "
                                      f"{r.tool:12} {r.rps:9,.0f} req/s  p50 "
                                      f"{r.p50_ms:7.3f} ms  errors {r.errors}",
                                      file=sys.stderr, flush=True)
    summaries = [p.full_summary() for p in points]
    out.mkdir(parents=True, exist_ok=True)
    meta["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat()
    (out / "fidelity.json").write_bytes(orjson.dumps(
        {"meta": meta, "points": [p.to_json() for p in points]},
        option=orjson.OPT_INDENT_2))
    (out / "fidelity.md").write_text(markdown(meta, summaries))
    print(table(summaries))
    print()
    print(diagnostics(summaries))
    warning = noise_warning(summaries)
    if warning:
        print("\n" + warning.replace("**", ""), end="")
    print(f"\nwritten: {out / 'fidelity.md'} and fidelity.json")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
