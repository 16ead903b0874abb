"""The network lab's ground truth: one record per IP packet the emulated link saw.

Written by the link emulator (or derived from a capture where the backend is netem),
kept with the results as `packets-<point>.csv.gz`, and read by the wire-byte accounting
and the head-of-line analysis. Times are CLOCK_MONOTONIC nanoseconds, the clock the
servers stamp tokens with and the clients stamp receipts with (shared by every network
namespace on the host).
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, Literal

Direction = Literal["up", "down"]          # up: client -> server; down: server -> client
# forwarded; dropped by the loss model; dropped by a drop-list rule; dropped inside a
# blackhole window; dropped because the drop-tail queue was full.
Outcome = Literal["fwd", "loss", "droplist", "blackhole", "queue"]
DROPPED: frozenset[str] = frozenset({"loss", "droplist", "blackhole", "queue"})


@dataclass(frozen=True, slots=True)
class PacketRecord:
    t_ns: int               # arrival at the link (the sender's side)
    direction: Direction
    size: int               # IP packet bytes, headers included
    proto: str              # "tcp", "udp", "icmp" or "ip<N>"
    sport: int              # 0 when the protocol has no ports
    dport: int
    outcome: Outcome
    release_ns: int         # delivery at the far side; 0 when dropped
    tcp_flags: str = ""     # e.g. "S", "SA", "PA", "FA" (TCP only)
    payload: int = 0        # transport payload bytes (TCP segment data / UDP datagram data)
    seq: int = 0            # TCP sequence number (0 otherwise): finds retransmissions and
                            # what a lost segment held back (harness.measure.mechanism)

    @property
    def dropped(self) -> bool:
        return self.outcome in DROPPED

    @property
    def client_port(self) -> int:
        """The client's port: identifies one TCP connection or QUIC socket."""
        return self.sport if self.direction == "up" else self.dport


_NAMES = [f.name for f in fields(PacketRecord)]
_INTS = {"t_ns", "size", "sport", "dport", "release_ns", "payload", "seq"}


def write_csv(path: Path, records: Iterable[PacketRecord]) -> int:
    """Write records (gzip when the name ends in .gz); returns how many."""
    opener = gzip.open if str(path).endswith(".gz") else open
    n = 0
    with opener(path, "wt", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(_NAMES)
        for rec in records:
            out.writerow(astuple(rec))
            n += 1
    return n


def read_csv(path: Path) -> Iterator[PacketRecord]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        rows = csv.DictReader(fh)
        for row in rows:
            # Logs written before `seq` existed lack the column: the default stands.
            yield PacketRecord(**{k: int(v) if k in _INTS else v for k, v in row.items()
                                  if v is not None})
