"""Socket-level wire counters: the fallback where no network namespace can be made.

TCP: the kernel's own per-socket counts (TCP_INFO: bytes acked by the peer, bytes
received, segments out and in), read when a connection closes and at each snapshot,
plus an estimated 52 B of IPv4 + TCP (with timestamps) headers per segment. QUIC: every
UDP datagram this process sends or receives, plus 28 B of IPv4 + UDP headers each.
Results label these figures as socket-level estimates; interface counters (harness.netns)
are the measured ones. gRPC's sockets live inside its C core, out of reach here.
"""

from __future__ import annotations

import socket
import struct

TCP_HEADERS = 20 + 32           # IPv4 + TCP with the timestamp option
UDP_HEADERS = 20 + 8
SOURCE = ("socket counters (TCP_INFO / UDP datagrams) + estimated IP headers; "
          "not available for grpc")


def _tcp_info(sock: socket.socket) -> tuple[int, int, int, int] | None:
    """(bytes up, bytes down, segments up, segments down) or None if unreadable."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError, ValueError):   # uvloop: already closed (fd -1)
        return None
    if len(info) < 144:
        return None
    acked, received = struct.unpack_from("=QQ", info, 120)
    segs_out, segs_in = struct.unpack_from("=II", info, 136)
    return max(0, acked - 1), received, segs_out, segs_in   # acked counts the SYN


class WireMeter:
    def __init__(self) -> None:
        self.open: dict[int, socket.socket] = {}
        self.closed = [0, 0, 0, 0]          # bytes up, down, packets up, down
        self.udp = [0, 0, 0, 0]

    def track(self, sock: socket.socket | None) -> None:
        if sock is not None:
            self.open[id(sock)] = sock

    def closing(self, sock: socket.socket | None) -> None:
        """Call before a tracked socket closes: its counts are kept."""
        if sock is None or self.open.pop(id(sock), None) is None:
            return
        counts = _tcp_info(sock)
        if counts:
            self.closed = [a + b for a, b in zip(self.closed, counts)]

    def datagram(self, size: int, *, sent: bool) -> None:
        if sent:
            self.udp[0] += size
            self.udp[2] += 1
        else:
            self.udp[1] += size
            self.udp[3] += 1

    def snapshot(self) -> dict[str, int]:
        """Totals so far: IP bytes (estimated headers included) and packets per direction."""
        tcp = list(self.closed)
        for key, sock in list(self.open.items()):
            if sock.fileno() < 0:           # closed without closing(): its counts are gone
                del self.open[key]
                continue
            counts = _tcp_info(sock)
            if counts:
                tcp = [a + b for a, b in zip(tcp, counts)]
        return {"up": tcp[0] + TCP_HEADERS * tcp[2] + self.udp[0] + UDP_HEADERS * self.udp[2],
                "down": tcp[1] + TCP_HEADERS * tcp[3] + self.udp[1] + UDP_HEADERS * self.udp[3],
                "up_packets": tcp[2] + self.udp[2], "down_packets": tcp[3] + self.udp[3]}


METER = WireMeter()      # one per process: a worker measures one protocol at a time
