"""Samples the kernel's congestion state (struct tcp_info) of a server's TCP sockets.

    nsenter -t PID -n -- python -m harness.netlab.tcp_sampler --port 8443 --out F.csv

Run inside the server's network namespace during a lossy point; every `interval` it
asks NETLINK_SOCK_DIAG (what `ss -ti` reads) for each TCP socket whose local port is
`--port` and keeps the fields that say whether the sender
could send: congestion window and packets in flight (in flight >= cwnd: the window is
full), the congestion-avoidance state, bytes written but not yet sent. Rows are kept in
memory and written when it stops (SIGTERM, stdin closed, or --max-s).

Cost: a dump walks the kernel's whole established-socket hash (shared by every namespace,
sized by RAM: ~1 ms here), so sockets are found by a dump every DISCOVER_S and then
looked up one by one by their exact address (a hash lookup, ~10 us each) every interval.
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator

from harness.measure.mechanism.tcp_samples import TcpSample, write_csv

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_DONE, NLMSG_ERROR = 3, 2
INET_DIAG_INFO = 2
TCP_LISTEN = 10
CA_STATES = ("open", "disorder", "cwr", "recovery", "loss")

DISCOVER_S = 0.1             # how often new connections are looked for
_NLMSGHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then an inet_diag_sockid
_REQ = struct.Struct("=BBBxI")
_NO_ID = bytes(48)
_DIAG_MSG = 72                       # inet_diag_msg: 4 + sockid (48) + 5 x u32
# struct tcp_info: 8 one-byte fields, then u32s from offset 8; tcpi_notsent_bytes at 144
_INFO_U32 = struct.Struct("=8x24I")


def _request(seq: int, family: int, sock_id: bytes = _NO_ID) -> bytes:
    """A dump of every non-listening TCP socket of one address family, or (given its
    inet_diag_sockid) one socket."""
    body = _REQ.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1),
                     0xFFFFFFFF & ~(1 << TCP_LISTEN)) + sock_id
    flags = NLM_F_REQUEST | (NLM_F_DUMP if sock_id is _NO_ID else 0)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, flags, seq, 0) + body


def parse(data: bytes, port: int, t_ns: int, found: dict[int, tuple[int, bytes]]
          ) -> tuple[list[TcpSample], bool]:
    """Samples of the sockets on local `port` in one netlink read (their family and
    sockid go into `found`, by client port); True at the end of a dump. A socket that is gone answers
    ENOENT: nothing."""
    out, off = [], 0
    while off + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size:
            break
        if kind == NLMSG_DONE:
            return out, True
        msg = off + _NLMSGHDR.size
        if kind == NLMSG_ERROR:
            err = -struct.unpack_from("=i", data, msg)[0]
            if err not in (0, errno.ENOENT):
                raise OSError(err, f"sock_diag failed: {os.strerror(err)}")
        elif kind == SOCK_DIAG_BY_FAMILY:
            sport, dport = struct.unpack_from("!HH", data, msg + 4)
            info = _tcp_info(data, msg + _DIAG_MSG, off + length) if sport == port else None
            if info is not None:
                found[dport] = (data[msg], bytes(data[msg + 4:msg + 52]))
                out.append(_sample(info, dport, t_ns))
        off += (length + 3) & ~3
    return out, False


def _tcp_info(data: bytes, at: int, end: int) -> bytes | None:
    while at + 4 <= end:
        rta_len, rta_type = struct.unpack_from("=HH", data, at)
        if rta_len < 4:
            return None
        if rta_type == INET_DIAG_INFO:
            return data[at + 4:at + rta_len]
        at += (rta_len + 3) & ~3
    return None


def _sample(info: bytes, client_port: int, t_ns: int) -> TcpSample:
    u = _INFO_U32.unpack_from(info)
    # u: rto ato snd_mss rcv_mss unacked sacked lost retrans fackets ... snd_cwnd at [18]
    unacked, sacked, lost, retrans = u[4], u[5], u[6], u[7]
    notsent = struct.unpack_from("=I", info, 144)[0] if len(info) >= 148 else 0
    return TcpSample(t_ns, client_port, CA_STATES[info[1]] if info[1] < 5 else str(info[1]),
                     u[18], unacked - (sacked + lost) + retrans, notsent, u[23], u[0])


class Sampler:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        self.seq = 0
        self.known: dict[int, tuple[int, bytes]] = {}   # client port -> family, sockid
        self.discovered = -DISCOVER_S

    def sample(self) -> list[TcpSample]:
        now = time.monotonic()
        if now - self.discovered >= DISCOVER_S:
            self.discovered = now
            return self._dump()
        t_ns = time.monotonic_ns()
        ids, self.known = self.known, {}
        for family, sock_id in ids.values():
            self.seq += 1
            self.sock.send(_request(self.seq, family, sock_id))
        out: list[TcpSample] = []
        for _ in ids:                         # one reply (or error) per request
            out += parse(self.sock.recv(1 << 16), self.port, t_ns, self.known)[0]
        return out

    def _dump(self) -> list[TcpSample]:
        """Both families: a server on `::` serves IPv4 clients from AF_INET6 sockets."""
        self.known = {}
        out: list[TcpSample] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            self.seq += 1
            t_ns = time.monotonic_ns()
            self.sock.send(_request(self.seq, family))
            done = False
            while not done:
                part, done = parse(self.sock.recv(1 << 16), self.port, t_ns, self.known)
                out += part
        return out

    def close(self) -> None:
        self.sock.close()


def run(port: int, interval_s: float, max_s: float, stop_fd: int | None) -> Iterator[TcpSample]:
    """Samples until max_s, SIGTERM, or EOF on stop_fd."""
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    sampler, deadline = Sampler(port), time.monotonic() + max_s
    try:
        next_t = time.monotonic()
        while not stopped and time.monotonic() < deadline:
            yield from sampler.sample()
            next_t += interval_s
            wait = max(0.0, next_t - time.monotonic())
            if stop_fd is not None:
                ready, _, _ = select.select([stop_fd], [], [], wait)
                if ready and not os.read(stop_fd, 4096):
                    return
            else:
                time.sleep(wait)
    finally:
        sampler.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.netlab.tcp_sampler",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="the server's local TCP port")
    p.add_argument("--out", required=True, help="CSV written when sampling stops")
    p.add_argument("--interval-ms", type=float, default=2.0)
    p.add_argument("--max-s", type=float, default=600.0, help="stop after this long")
    a = p.parse_args(argv)
    samples: list[TcpSample] = []
    try:
        samples.extend(run(a.port, a.interval_ms / 1e3, a.max_s, sys.stdin.fileno()))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"tcp_sampler: {exc}", file=sys.stderr)
        return 1
    finally:
        write_csv(a.out, samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
