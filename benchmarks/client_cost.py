"""What each HTTP client spends per request, counted instead of timed.

    python benchmarks/client_cost.py [--protocols caddy-http/1.1,caddy-h2c]
                                     [--clients native,libcurl-c,libcurl,curl,python]

benchmarks/fidelity.py times the harness's clients against wrk and h2load. At one user on
a shared 2-core machine its pairs spread by +-10%, more than the 5% floor it judges, so a
timing cannot say whether a client is a few percent heavier than the native tool. This
counts what the client does instead, and the counts do not move with the machine's noise:

  instructions / request   user-space instructions of the client process (valgrind's
                           callgrind; the same count however busy the machine is)
  syscalls / request       system calls of the client process (strace -f -c)

against one server (fidelity's PROTOCOLS; default the Caddy front of the default
scenario, cleartext), one user on one keep-alive connection, the small request
(fidelity's "small": the protocol engine is all there is). Clients, as fidelity runs them:

  native       wrk (HTTP/1.1) or h2load (h2c)
  libcurl-c    libcurl in C (benchmarks/libcurl_loop.c, the libcurl pycurl bundles)
  libcurl      libcurl alone through pycurl (benchmarks/curl_alone.py)
  curl, python the harness's engines: a `python -m harness.run.worker` at one user

Each client runs twice, for --seconds and for 3x as long, and per request is
(count of the long run - count of the short) / (requests of the long - of the short):
start-up, warm-up and exit are in both runs and cancel.

Under valgrind a client runs some 50x slower, so the server always has the response
ready when the client reads: the instruction counts are of the client's own work with no
waiting in it. strace slows the client less, so its system calls still include the reads
that find nothing yet (EAGAIN) and the polls that follow; they vary a little with timing.

Needs valgrind and strace (Debian/Ubuntu: apt-get install -y valgrind strace), wrk and
h2load, and a C compiler for libcurl-c. Writes
`<out>/client-cost-<UTC timestamp>/client_cost.json` and `client_cost.md` (default out:
results/) and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))    # the repository

import orjson

from clients.base import Target
from servers.launcher import start_server

from fidelity_measure import Pinning, Run
from fidelity_setup import H2C_KINDS, PROTOCOLS, ROOT, request_body
from fidelity_tools import Harness, Native

CLIENTS = ("native", "libcurl-c", "libcurl", "curl", "python")
LONG_OVER_SHORT = 3
SIZE = "small"
INSTALL = "apt-get install -y valgrind strace wrk nghttp2-client"


@dataclass
class Count:
    """One client's two runs under one counter."""
    short: tuple[int, int]          # (count, requests)
    long: tuple[int, int]

    @property
    def per_request(self) -> float | None:
        dn = self.long[1] - self.short[1]
        return (self.long[0] - self.short[0]) / dn if dn > 0 else None


def callgrind_total(path: Path) -> int:
    """The instruction total a callgrind output file ends with."""
    m = re.search(r"^(?:totals|summary):\s*(\d+)", path.read_text(errors="replace"), re.MULTILINE)
    if m is None:
        raise RuntimeError(f"{path} holds no callgrind total")
    return int(m.group(1))


def strace_total(path: Path) -> int:
    """The number of system calls on the 'total' line of `strace -c` output."""
    for line in reversed(path.read_text(errors="replace").splitlines()):
        fields = line.split()
        if fields and fields[-1] == "total":
            return int(fields[3])           # % time, seconds, usecs/call, calls, [errors]
    raise RuntimeError(f"{path} holds no strace summary")


COUNTERS = {
    # name: (wrapper taking the output file, reader of that file)
    "instructions": (lambda out: ["valgrind", "--tool=callgrind", "--quiet",
                                  f"--callgrind-out-file={out}"], callgrind_total),
    "syscalls": (lambda out: ["strace", "-f", "-c", "-o", str(out)], strace_total),
}


class Clients:
    """Runs one client of CLIENTS for a while under a wrapper; returns fidelity's Run."""

    def __init__(self, work: Path, pin: Pinning) -> None:
        self.native = Native(work, pin)
        self.harness = Harness(pin)
        self.body = work / f"{SIZE}.json"
        self.body.write_bytes(request_body(SIZE))

    def run(self, client: str, wrap: list[str], proto: str, server, target: Target,
            url: str, seconds: int) -> Run:
        client_id, _, tool = PROTOCOLS[proto]
        self.native.wrap = self.harness.wrap = wrap
        if client == "native":
            run = self.native.wrk if tool == "wrk" else self.native.h2load
            return run(url, self.body, 1, seconds, server)
        if client in ("libcurl", "libcurl-c"):
            return self.native.libcurl(client, url, self.body, 1, seconds, server,
                                       "1.1" if client_id == "rest-h1" else "2")
        return self.harness.run(client_id, target, SIZE, 1, seconds, server, engine=client)


def measure(clients: Clients, client: str, proto: str, server, target: Target, url: str,
            seconds: int, work: Path) -> dict[str, Count]:
    out: dict[str, Count] = {}
    for name, (wrapper, read) in COUNTERS.items():
        runs = []
        for secs in (seconds, seconds * LONG_OVER_SHORT):
            path = work / f"{name}-{client}-{secs}.out"
            r = clients.run(client, wrapper(path), proto, server, target, url, secs)
            if r.errors:
                raise RuntimeError(f"{client} on {proto}: {r.errors} errors")
            runs.append((read(path), r.requests))
            print(f"  {proto:14} {client:9} {name:12} {secs:3} s: {r.requests:6} requests, "
                  f"{runs[-1][0]:,}", file=sys.stderr, flush=True)
        out[name] = Count(*runs)
    return out


def label(client: str, proto: str) -> str:
    tool = PROTOCOLS[proto][2]
    return {"native": tool, "libcurl-c": "libcurl in C", "libcurl": "libcurl alone (pycurl)",
            "curl": "harness +curl", "python": "harness (python)"}[client]


def table(results: dict[str, dict[str, dict[str, Count]]]) -> str:
    lines = ["| protocol | client | instructions / request | x native | syscalls / request |",
             "|---|---|---:|---:|---:|"]
    for proto, by_client in results.items():
        ref = by_client.get("native", {}).get("instructions")
        base = ref.per_request if ref else None
        for client, counts in by_client.items():
            ins = counts["instructions"].per_request
            sc = counts["syscalls"].per_request
            ratio = f"{ins / base:.1f}x" if ins and base else "-"
            lines.append(f"| {proto} | {label(client, proto)} | "
                         f"{f'{ins:,.0f}' if ins else '-'} | {ratio} | "
                         f"{f'{sc:.1f}' if sc else '-'} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocols", default="caddy-http/1.1,caddy-h2c",
                   help=f"comma list of {', '.join(PROTOCOLS)} (default the Caddy front)")
    p.add_argument("--clients", default=",".join(CLIENTS),
                   help=f"comma list of {', '.join(CLIENTS)} (default all)")
    p.add_argument("--seconds", type=int, default=2,
                   help=f"the short run; the long one is {LONG_OVER_SHORT}x (default 2)")
    p.add_argument("--out", type=Path, default=ROOT / "results",
                   help="parent directory of client-cost-<UTC timestamp>/ (default results/)")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and clients to CPUs")
    a = p.parse_args(argv)
    a.protocols = [x for x in a.protocols.split(",") if x]
    a.clients = [x for x in a.clients.split(",") if x]
    for x in a.protocols:
        if x not in PROTOCOLS:
            p.error(f"unknown protocol {x!r}; one of {', '.join(PROTOCOLS)}")
    for x in a.clients:
        if x not in CLIENTS:
            p.error(f"unknown client {x!r}; one of {', '.join(CLIENTS)}")
    if a.seconds < 1:
        p.error("--seconds must be at least 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = ["valgrind", "strace"]
    if "native" in args.clients:
        tools += sorted({PROTOCOLS[p][2] for p in args.protocols})
    missing = [t for t in tools if shutil.which(t) is None]
    if "libcurl-c" in args.clients and not (shutil.which("cc") or shutil.which("gcc")):
        missing.append("cc")                # libcurl_loop.c is compiled at run time
    if missing:
        print(f"client_cost: {', '.join(missing)} not found on PATH "
              f"(Debian/Ubuntu: {INSTALL}{', gcc' if 'cc' in missing else ''})",
              file=sys.stderr)
        return 2
    pin = Pinning.choose(not args.no_pin)
    results: dict[str, dict[str, dict[str, Count]]] = {}
    failed: list[str] = []          # one client's failure costs only its own row
    with tempfile.TemporaryDirectory(prefix="wirebench-client-cost-") as tmp:
        work = Path(tmp)
        clients = Clients(work, pin)
        for proto in args.protocols:
            _, kind, _ = PROTOCOLS[proto]
            h2c = kind in H2C_KINDS
            with start_server(kind, extra=["--h2c-port", "0"] if h2c else None) as server:
                pin.pin_server(server)
                port = server.info["h2c_port"] if h2c else server.port
                target = Target(port=port, **({"tls": False} if h2c else {}))
                url = f"http://127.0.0.1:{port}/v1/embeddings"
                results[proto] = {}
                for c in args.clients:
                    try:
                        results[proto][c] = measure(clients, c, proto, server, target, url,
                                                    args.seconds, work)
                    except (RuntimeError, subprocess.SubprocessError) as e:
                        failed.append(f"{proto} {c}: {str(e).strip()[:500]}")
                        print(f"client_cost: {failed[-1]}", file=sys.stderr)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"client-cost-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    text = table(results)
    if failed:
        text += "\n\nNot counted:\n" + "\n".join(f"- {f}" for f in failed)
    (out / "client_cost.json").write_bytes(orjson.dumps({
        "seconds": [args.seconds, args.seconds * LONG_OVER_SHORT], "size": SIZE,
        "failed": failed,
        "results": {p: {c: {n: {"short": k.short, "long": k.long, "per_request": k.per_request}
                            for n, k in counts.items()} for c, counts in by.items()}
                    for p, by in results.items()}}, option=orjson.OPT_INDENT_2))
    (out / "client_cost.md").write_text(
        "# What each client spends per request (one user, small request)\n\n"
        f"Counted by `python benchmarks/client_cost.py --protocols {','.join(args.protocols)} "
        f"--clients {','.join(args.clients)} --seconds {args.seconds}`; "
        "see its docstring for the method.\n\n" + text + "\n")
    print(text)
    print(f"\nwritten: {out / 'client_cost.md'} and client_cost.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
