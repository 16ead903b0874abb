"""A TCP sender's congestion state as harness.netlab.tcp_sampler records it (one row
per socket per sample), and its CSV file."""

from __future__ import annotations

import csv
from dataclasses import astuple, dataclass, fields
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TcpSample:
    t_ns: int                # CLOCK_MONOTONIC, the clock of the packet log and the traces
    client_port: int         # the peer's port: one connection
    ca_state: str            # open | disorder | cwr | recovery | loss
    cwnd: int                # packets
    in_flight: int           # packets: unacked - (sacked + lost) + retrans (the kernel's rule)
    notsent_bytes: int       # written by the application, not yet sent
    total_retrans: int
    rto_us: int

    @property
    def window_full(self) -> bool:
        return self.in_flight >= self.cwnd


def write_csv(path: Path | str, samples: list[TcpSample]) -> None:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([f.name for f in fields(TcpSample)])
        out.writerows(astuple(s) for s in samples)


def read_csv(path: Path | str) -> list[TcpSample]:
    with open(path, newline="") as fh:
        return [TcpSample(**{k: v if k == "ca_state" else int(v) for k, v in row.items()})
                for row in csv.DictReader(fh)]
