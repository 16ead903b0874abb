"""aioquic's recovery state written out as it changes, for the head-of-line lab.

Set QLOGDIR (the variable quic-go reads, so Caddy's HTTP/3 front writes its own qlog
there too) and every server QUIC connection writes one JSON-lines file to it: a
`connection_started` line naming the client's port, then aioquic's qlog events
`recovery:metrics_updated` (congestion window, bytes in flight; what the split reads)
and `recovery:packet_lost` (rare; for a reader of the file). Nothing per packet sent:
one line per packet would be the logger's own cost on the server's send path. Times
are CLOCK_MONOTONIC ns (`t_ns`), the clock of the packet log and the token stamps,
instead of qlog's wall-clock ms. Other events are dropped at once. Only connections
opened while QLOGDIR/on exists are traced (the lab creates it for lossy points):
aioquic builds every event of a traced connection, CPU that must not count in a
lossless point's cost per token.
harness.measure.mechanism reads the files.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from aioquic.quic.logger import QuicLogger, QuicLoggerTrace

ENV = "QLOGDIR"
ON_FLAG = "on"          # QLOGDIR/on exists: new connections are traced
KEEP = frozenset({"recovery:metrics_updated", "recovery:packet_lost"})
_serial = itertools.count()


class LineTrace(QuicLoggerTrace):
    def __init__(self, fh: IO[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fh = fh
        self.peer_logged = False

    def log_event(self, *, category: str, event: str, data: dict) -> None:
        name = f"{category}:{event}"
        if name in KEEP and not self.fh.closed:
            self._line(name, data)

    def connection_started(self, addr: Any) -> None:
        if not self.peer_logged:
            self.peer_logged = True
            self._line("transport:connection_started",
                       {"remote": {"ip": str(addr[0]), "port": int(addr[1])}})

    def _line(self, name: str, data: dict) -> None:
        # One line per write (line buffering): the file is whole whenever it is read.
        self.fh.write(json.dumps({"t_ns": time.monotonic_ns(), "name": name, "data": data},
                                 separators=(",", ":")) + "\n")


class LineLogger(QuicLogger):
    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def start_trace(self, is_client: bool, odcid: bytes) -> QuicLoggerTrace | None:
        if not (self.directory / ON_FLAG).exists():
            return None               # aioquic then logs nothing and builds no events
        name = f"aioquic-{os.getpid()}-{next(_serial)}-{odcid.hex()}.qlog.jsonl"
        fh = open(self.directory / name, "w", buffering=1)   # noqa: SIM115 (end_trace)
        fh.write(json.dumps({"stack": "aioquic", "vantage_point": "client" if is_client
                             else "server", "clock": "CLOCK_MONOTONIC ns"}) + "\n")
        return LineTrace(fh, is_client=is_client, odcid=odcid)

    def end_trace(self, trace: QuicLoggerTrace) -> None:
        if isinstance(trace, LineTrace):
            trace.fh.close()


def logger_from_env() -> LineLogger | None:
    """The logger QLOGDIR asks for (the directory is created), else None."""
    directory = os.environ.get(ENV)
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    return LineLogger(Path(directory))


def note_peer(trace: Any, addr: Any) -> None:
    """Record a connection's client address the first time it sends (the trace alone
    knows only connection ids; the packet log knows ports)."""
    if isinstance(trace, LineTrace):
        trace.connection_started(addr)
