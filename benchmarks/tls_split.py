"""What splitting TCP from TLS costs the HTTP/1.1 and HTTP/2 clients' connection setup.

    python benchmarks/tls_split.py [--n 300]

clients/transport/connect.py opens a connection in two timed steps (connect() on our own socket,
then `create_connection(sock=..., ssl=ctx)` for the handshake alone) so that curl's
time_connect and time_appconnect can be reported apart. This compares, on loopback
against the project's hypercorn TLS server, the median time to a usable TLS connection
with that split and with one `create_connection(host, port, ssl=ctx)`, interleaved,
under uvloop (what workers run) and the stdlib loop. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path


from clients.base import clock_ns
from clients.transport.connect import open_connection
from clients.transport.phases import ConnectStamps
from servers.launcher import start_server
from servers.tls import ensure_tls_files
from base.client_tls import client_context


class _Keep(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


async def compare(port: int, ca: Path, n: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    ctx = client_context(ca, ["h2"])
    one, split = [], []
    for i in range(n):
        for which in ((0, 1) if i % 2 else (1, 0)):
            t0 = clock_ns()
            if which == 0:
                transport, _ = await loop.create_connection(
                    _Keep, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
                one.append(clock_ns() - t0)
            else:
                proto = await open_connection(_Keep, "127.0.0.1", port, ctx=ctx,
                                              server_name="localhost",
                                              stamps=ConnectStamps(t0), timeout_s=5,
                                              label="bench", host="127.0.0.1")
                split.append(clock_ns() - t0)
                transport = proto.transport
            transport.close()
    return {"one_call_us": statistics.median(one) / 1000,
            "split_us": statistics.median(split) / 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()
    files = ensure_tls_files()
    import uvloop
    with start_server("h2") as srv:
        for name, run in (("uvloop", uvloop.run), ("asyncio", asyncio.run)):
            r = run(compare(srv.port, files.ca, a.n))
            print(f"{name:8s} to a TLS 1.3 connection, median of {a.n}: one call "
                  f"{r['one_call_us']:.0f} us, TCP then TLS {r['split_us']:.0f} us "
                  f"({r['split_us'] - r['one_call_us']:+.0f} us)")


if __name__ == "__main__":
    main()
