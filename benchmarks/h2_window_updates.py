"""What libcurl's per-stream WINDOW_UPDATE frames cost an HTTP/2 server.

    python benchmarks/h2_window_updates.py [--requests N] [--repeats R]

libcurl 8 opens each HTTP/2 stream with a 64 KB receive window and, when the response
headers arrive, raises it to 10 MB (lib/http2.c, cf_h2_update_local_win): it calls
nghttp2_session_set_local_window_size, which queues a WINDOW_UPDATE, and then submits
the same increment again, so each request costs the server two 13-byte WINDOW_UPDATE
frames in a write of their own. h2load sends none for small responses. On a Python
server (hypercorn + h2) that is a read, a parse and a flow-control event more per
request, on the server's core, which a closed loop waits for.

This isolates that cost without libcurl: the python engine's blocking HTTP/2 client
(clients/blocking/http2.py) runs against `python -m servers h2` (h2c) as is, then with
libcurl's two frames written when a response's headers arrive, in interleaved runs
(server pinned to CPU 0, client to CPU 1 when there are two). Prints req/s and server
CPU per request for both, and the ratio. Installs nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clients.base import Target
from clients.blocking.http2 import BlockingH2Transport
from clients.blocking.rest import BlockingRestClient
from harness.measure.cpu import processes_cpu_s
from servers.launcher import start_server

REQUEST = {"model": "wirebench-embed-1", "input": ["hello world " * 4], "dimensions": 8,
           "encoding_format": "float"}
# What libcurl 8.23 was seen sending (strace, tshark): the stream's window raised from
# 64 KB to 10 MB, twice.
INCREMENT = 10 * 1024 * 1024 - 64 * 1024


def window_update(stream: int, increment: int) -> bytes:
    return struct.pack(">I", 4)[1:] + bytes([8, 0]) + struct.pack(">II", stream, increment)


class LibcurlLikeH2(BlockingH2Transport):
    """The blocking HTTP/2 client, plus libcurl's two WINDOW_UPDATEs per response."""

    _raised = -1            # the last stream whose window was raised

    def _response(self, stream, t, pending):            # type: ignore[no-untyped-def]
        if self._raised != pending.stream:
            self._raised = pending.stream
            self.sock.sendall(window_update(pending.stream, INCREMENT) * 2)
        return super()._response(stream, t, pending)


def run(transport_cls: type, target: Target, requests: int, server_pids: list[int]
        ) -> tuple[float, float]:
    """(req/s, server CPU us per request) of one closed loop at concurrency 1."""
    client = BlockingRestClient("rest-h2", "python", transport_cls(target, timeout_s=10),
                                target)
    try:
        for _ in range(min(500, requests)):
            client.embed_sync(REQUEST)                  # warm: connection, caches
        cpu0, t0 = processes_cpu_s(server_pids), time.monotonic()
        for _ in range(requests):
            client.embed_sync(REQUEST)
        wall, cpu = time.monotonic() - t0, processes_cpu_s(server_pids) - cpu0
    finally:
        client.close()
    return requests / wall, cpu / requests * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=6000, help="per run (default 6000)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved pairs (default 5)")
    a = p.parse_args()
    kinds = {"as is": BlockingH2Transport, "+ libcurl's WINDOW_UPDATEs": LibcurlLikeH2}
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    with start_server("h2", extra=["--h2c-port", "0"]) as server:
        if len(os.sched_getaffinity(0)) >= 2:
            for pid in server.pids:             # every thread of the server
                for tid in os.listdir(f"/proc/{pid}/task"):
                    os.sched_setaffinity(int(tid), {0})
            os.sched_setaffinity(0, {1})
        target = Target(port=server.info["h2c_port"], tls=False)
        for rep in range(a.repeats):
            order = list(kinds) if rep % 2 == 0 else list(reversed(kinds))
            for name in order:
                got[name].append(run(kinds[name], target, a.requests, server.pids))
                rps, cpu = got[name][-1]
                print(f"  rep {rep + 1} {name:28} {rps:7,.0f} req/s  server {cpu:4.0f} us/req",
                      file=sys.stderr, flush=True)
    base, extra = got["as is"], got["+ libcurl's WINDOW_UPDATEs"]
    print("| client | req/s (median) | server CPU us/req (median) |")
    print("|---|---:|---:|")
    for name, runs in got.items():
        print(f"| {name} | {statistics.median(r[0] for r in runs):,.0f} | "
              f"{statistics.median(r[1] for r in runs):.0f} |")
    print(f"\nreq/s ratio with/without (median of pairs): "
          f"{statistics.median(e[0] / b[0] for b, e in zip(base, extra)):.2f}x; server CPU "
          f"+{statistics.median(e[1] - b[1] for b, e in zip(base, extra)):.0f} us/req")


if __name__ == "__main__":
    main()
