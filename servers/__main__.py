"""Run one wirebench server in the foreground.

    python -m servers PROTOCOL_OR_KIND [--host 127.0.0.1] [--port N] [--api-key K] ...

PROTOCOL_OR_KIND is a protocol id (rest-h1, sse-h2, grpc-stream, ...) or a server kind
(h1 h2 h3 grpc ws), or `dns` (the UDP DNS server, own flags: `python -m servers dns -h`).
Port 0 lets the OS pick. When listening, the server prints one
line `WIREBENCH-READY {"kind": ..., "port": ...}` to stdout (the launcher's readiness
check) and serves until SIGINT or SIGTERM. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from base.protocols import PROTOCOLS, SERVER_KINDS

from servers.core import Limits
from servers.cors import parse_origins
from base.lifetime import die_with_parent
from servers.options import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S, ServerOptions
from servers.tls import ensure_tls_files, export_ca

READY_PREFIX = "WIREBENCH-READY "

# kind -> module holding `async def serve(opts, ready)`
SERVER_MODULES = {"h1": "servers.http.http_server", "h2": "servers.http.http_server",
                  "h3": "servers.http.http_server", "grpc": "servers.grpc_server",
                  "ws": "servers.ws_server",
                  "granian-h1": "servers.http.granian_server",
                  "granian-h2": "servers.http.granian_server",
                  **{f"caddy-{v}": "servers.http.caddy_server" for v in ("h1", "h2", "h3")},
                  **{f"fastapi-{v}": "servers.http.fastapi_server" for v in ("h1", "h2", "h3")}}
# Kinds that serve TLS (TCP or QUIC) and so need the certificate files.
TLS_KINDS = ("h2", "h3", "granian-h2", "caddy-h2", "caddy-h3", "fastapi-h2", "fastapi-h3")
# Kinds that can also serve cleartext HTTP/2 (h2c) with --h2c-port.
H2C_KINDS = ("h2", "granian-h2", "caddy-h2", "fastapi-h2")
# Not a GenAI backend, so it parses its own flags (servers/dns_server.py).
DNS_KIND = "dns"
# Kinds served on the stdlib event loop; every other kind runs on uvloop.
# - grpc: grpc.aio supports only the stdlib loop.
# - h3: hypercorn's QUIC server gives aioquic the loop's clock (loop.time()) for its
#   pacer and timers, and uvloop's clock ticks in whole milliseconds. A pacer waiting for
#   a send time a fraction of a millisecond ahead then re-arms its timer over and over
#   until the tick, so the server spun at 100% of a core and a 154 KB response took
#   ~68 ms instead of ~10 (benchmarks/README.md, "HTTP/3 on uvloop"). The stdlib loop's
#   clock is time.monotonic(), and it is hypercorn's own default worker class.
STDLIB_LOOP_KINDS = ("grpc", "h3")


def parse_args(argv: list[str] | None = None) -> ServerOptions:
    p = argparse.ArgumentParser(prog="python -m servers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", metavar="PROTOCOL_OR_KIND",
                   help=f"one of {', '.join(SERVER_KINDS)} or a protocol id "
                        f"({', '.join(PROTOCOLS)})")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 lets the OS pick (default)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (gRPC: metadata)")
    p.add_argument("--h2c-port", type=int,
                   help="h2 only: also serve cleartext HTTP/2 (h2c) on this port (0: any)")
    p.add_argument("--tls-version", choices=("1.2", "1.3"), default="1.2",
                   help="h2: lowest TLS version accepted (default 1.2, so clients pick)")
    p.add_argument("--header-timeout-s", type=float, default=DEFAULT_HEADER_TIMEOUT_S,
                   help="HTTP/1.1 (uvicorn): close a connection whose request head has not "
                        f"arrived in this time (slowloris; default {DEFAULT_HEADER_TIMEOUT_S:g})")
    p.add_argument("--idle-timeout-s", type=float, default=DEFAULT_IDLE_TIMEOUT_S,
                   help="HTTP/1.1 (uvicorn): close a keep-alive connection idle this long "
                        f"(default {DEFAULT_IDLE_TIMEOUT_S:g})")
    p.add_argument("--cors", metavar="ORIGINS",
                   help="browser pages allowed to call: '*' or comma-separated origins "
                        "(http://localhost:8000,...). HTTP: CORS headers and preflights; "
                        "ws: the handshake's Origin. Default: none (same-origin only)")
    p.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                   help="a host name or address clients on other hosts reach this server "
                        "by, for its certificate (repeatable; besides localhost, 127.0.0.1, "
                        "::1 and wirebench.test, which every certificate names)")
    p.add_argument("--export-ca", type=Path, metavar="PATH",
                   help="write the CA certificate that signed the server certificate (for "
                        "these --tls-name) to PATH: a client on another host verifies "
                        "against it (a scenario's remote.ca)")
    d = Limits()
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                   help=f"largest request body/message (default {d.max_body_bytes})")
    p.add_argument("--max-batch", type=int, default=d.max_batch,
                   help=f"most inputs per embedding request (default {d.max_batch})")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help=f"largest max_tokens accepted (default {d.max_tokens})")
    p.add_argument("--max-model-ms", type=float, default=d.max_model_ms,
                   help="largest simulated delay a request may ask for (ttft_ms, itl_ms, "
                        f"compute_ms; default {d.max_model_ms:g})")
    a = p.parse_args(argv)
    kind = a.what if a.what in SERVER_KINDS else None
    if kind is None:
        if a.what not in PROTOCOLS:
            p.error(f"unknown protocol or kind {a.what!r}")
        kind = PROTOCOLS[a.what].server
    if a.h2c_port is not None and kind not in H2C_KINDS:
        p.error(f"--h2c-port only applies to the {', '.join(H2C_KINDS)} servers")
    if a.cors is not None and kind == "grpc":
        p.error("--cors applies to the HTTP and WebSocket servers, not gRPC")
    try:
        cors = parse_origins(a.cors)
    except ValueError as exc:
        p.error(f"--cors: {exc}")
    limits = Limits(max_body_bytes=a.max_body_bytes, max_batch=a.max_batch,
                    max_tokens=a.max_tokens, max_model_ms=a.max_model_ms)
    tls = None
    if kind in TLS_KINDS or a.export_ca is not None:
        files = ensure_tls_files(extra_names=tuple(a.tls_name))
        tls = files if kind in TLS_KINDS else None
        if a.export_ca is not None:    # any kind may: one script starts them all alike
            try:
                export_ca(files, a.export_ca)
            except OSError as exc:
                p.error(f"--export-ca {a.export_ca}: {exc.strerror or exc}")
    return ServerOptions(kind=kind, host=a.host, port=a.port, api_key=a.api_key,
                         limits=limits, tls=tls, h2c_port=a.h2c_port,
                         tls_version=a.tls_version, header_timeout_s=a.header_timeout_s,
                         idle_timeout_s=a.idle_timeout_s, cors_origins=cors)


def announce(info: dict) -> None:
    sys.stdout.write(READY_PREFIX + json.dumps(info) + "\n")
    sys.stdout.flush()


async def until_signal(kind: str, serve, *args) -> None:
    """Run `serve(*args, ready)` until SIGINT or SIGTERM."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await serve(*args, lambda info: announce({"kind": kind, **info}))
    except asyncio.CancelledError:
        pass


async def run(opts: ServerOptions) -> None:
    serve = importlib.import_module(SERVER_MODULES[opts.kind]).serve
    await until_signal(opts.kind, serve, opts)


def main(argv: list[str] | None = None) -> None:
    die_with_parent()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [DNS_KIND]:
        import uvloop
        from servers import dns_server
        cfg = dns_server.parse_args(argv[1:])
        uvloop.run(until_signal(DNS_KIND, dns_server.serve, cfg))
        return
    opts = parse_args(argv)
    loop_runner(opts.kind)(run(opts))


def loop_runner(kind: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """What runs a server kind's event loop: asyncio.run (STDLIB_LOOP_KINDS) or uvloop.run."""
    if kind in STDLIB_LOOP_KINDS:
        return asyncio.run
    import uvloop
    return uvloop.run


if __name__ == "__main__":
    main()
