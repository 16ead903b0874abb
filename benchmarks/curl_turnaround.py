"""Where the libcurl asyncio path loses to libcurl alone when the server is the bottleneck.

    python benchmarks/curl_turnaround.py [--server caddy-h2] [--users 16] [--busy-us 30]
                                         [--duration 3] [--repeats 3]

At c=16 on small requests behind Caddy, the server's core is saturated, yet the
harness's libcurl engine serves ~0.93x the requests of libcurl alone (fidelity.py).
This runs, in interleaved repeats against one pinned server (server on CPU 0, clients
on CPU 1, as fidelity.py pins):

  libcurl alone      benchmarks/curl_alone.py: a plain CurlMulti loop (no wirebench code)
  harness engine     the harness's worker, engine curl (what a scenario runs)
  transport          clients.curl.transport.CurlTransport on uvloop, C users fetching
                     in a loop and nothing else
  transport +busy    the same, each user spinning --busy-us after each response and
                     before its next request (like the harness's per-request work:
                     decode, result, recorder); requests added in one loop iteration
                     leave together, on libcurl's "due now" timer, after all that work
  ... each sent      the same, but each request sent the moment it is added (a
                     socket_action of its own), not batched behind the others' work
  ... sent first     the next request added and sent first, then the spin: the work
                     no longer delays any request

Prints req/s per variant (median over repeats) and its ratio to libcurl alone. If the
transport alone keeps up with libcurl alone and the spin reproduces the engine's loss,
the loss is the client's per-request work, not libcurl driven from asyncio; the last
two variants say whether sending earlier wins it back (benchmarks/README.md has runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clients.base import Target
from servers.launcher import start_server

# benchmarks/ is this script's directory: fidelity.py's pinning and runners
from fidelity_measure import Pinning
from fidelity_setup import request_body
from fidelity_tools import Harness, Native

HEADERS = [(b"content-type", b"application/json"), (b"accept", b"*/*")]


def spin(us: float) -> None:
    end = time.perf_counter_ns() + int(us * 1000)
    while time.perf_counter_ns() < end:
        pass


async def transport_loop(port: int, version: str, users: int, duration_s: float,
                         busy_us: float, mode: str, body: bytes) -> dict:
    from clients.curl.transport import CurlTransport
    tr = CurlTransport(Target(host="127.0.0.1", port=port, tls=False), reuse=True,
                       version=version, max_connections=users if version == "1.1" else None)
    done, stop = 0, False
    if mode == "each-sent":               # every request sent as soon as it is added
        start = tr._start

        def start_now(*args):               # type: ignore[no-untyped-def]
            ex = start(*args)
            if tr._timer is not None:
                tr._kick()
            return ex
        tr._start = start_now               # type: ignore[method-assign]

    async def user() -> None:
        nonlocal done
        if mode != "request-first":
            while not stop:
                await tr.fetch(b"POST", b"/v1/embeddings", HEADERS, body)
                done += 1
                spin(busy_us)
            return
        ex = tr._start(b"POST", b"/v1/embeddings", HEADERS, body, True)
        while True:
            await ex.ready
            done += 1
            if stop:
                return
            ex = tr._start(b"POST", b"/v1/embeddings", HEADERS, body, True)
            if tr._timer is not None:       # queued for libcurl's "due now" timer
                tr._kick()                  # send it now instead
            spin(busy_us)

    tasks = [asyncio.create_task(user()) for _ in range(users)]
    await asyncio.sleep(0.5)                        # connections open, caches warm
    n0, t0 = done, time.perf_counter()
    await asyncio.sleep(duration_s)
    n, wall = done - n0, time.perf_counter() - t0
    stop = True
    await asyncio.gather(*tasks)
    await tr.close()
    return {"rps": n / wall}


def run_transport(pin: Pinning, port: int, version: str, users: int, duration_s: float,
                  busy_us: float, mode: str) -> float:
    cmd = pin.client_prefix() + [sys.executable, __file__, "--transport-port", str(port),
                                 "--http", version, "--users", str(users),
                                 "--duration", str(duration_s), "--busy-us", str(busy_us),
                                 "--mode", mode]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         timeout=duration_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"transport loop failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["rps"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="caddy-h2", choices=("caddy-h2", "caddy-h1", "h1", "h2"))
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--busy-us", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--transport-port", type=int, help=argparse.SUPPRESS)  # the child's mode
    p.add_argument("--http", default="2", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="work-first", help=argparse.SUPPRESS)
    a = p.parse_args()
    body = request_body("small")
    if a.transport_port:
        import uvloop
        print(json.dumps(uvloop.run(transport_loop(a.transport_port, a.http, a.users,
                                                   a.duration, a.busy_us, a.mode, body))))
        return
    h2 = a.server.endswith("h2")
    version, protocol = ("2", "rest-h2") if h2 else ("1.1", "rest-h1")
    pin = Pinning.choose(True)
    work = Path(tempfile.mkdtemp(prefix="wirebench-turnaround-"))
    body_file = work / "small.json"
    body_file.write_bytes(body)
    native, harness = Native(work, pin), Harness(pin)
    variants = {
        "libcurl alone": None, "harness engine": None, "transport": (0.0, "work-first"),
        f"transport +{a.busy_us:g} us": (a.busy_us, "work-first"),
        f"transport +{a.busy_us:g} us, each sent": (a.busy_us, "each-sent"),
        f"transport +{a.busy_us:g} us, sent first": (a.busy_us, "request-first")}
    rps: dict[str, list[float]] = {k: [] for k in variants}
    with start_server(a.server, extra=["--h2c-port", "0"] if h2 else None) as server:
        pin.pin_server(server)
        port = server.info["h2c_port"] if h2 else server.port
        target = Target(port=port, tls=False) if h2 else Target(port=port)
        url = f"http://127.0.0.1:{port}/v1/embeddings"
        native.libcurl(url, body_file, 1, 1, server, version)      # warm the server
        for rep in range(a.repeats):
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for name in order:
                if name == "libcurl alone":
                    r = native.libcurl(url, body_file, a.users, a.duration, server, version).rps
                elif name == "harness engine":
                    r = harness.run(protocol, target, "small", a.users, a.duration, server,
                                    "curl").rps
                else:
                    busy, mode = variants[name]          # type: ignore[misc]
                    r = run_transport(pin, port, version, a.users, a.duration, busy, mode)
                rps[name].append(r)
                print(f"  rep {rep + 1} {name:24s} {r:8,.0f} req/s", flush=True)
    ref = statistics.median(rps["libcurl alone"])
    print(f"\n{a.server}, small requests, {a.users} users, {a.repeats} interleaved repeats "
          f"of {a.duration:g} s (median req/s, ratio to libcurl alone):")
    for name, values in rps.items():
        med = statistics.median(values)
        print(f"  {name:24s} {med:8,.0f}  {med / ref:.2f}x")


if __name__ == "__main__":
    main()
