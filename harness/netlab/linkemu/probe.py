"""Small, time-bounded traffic probes for testing and measuring the emulated link.

Run inside a namespace (`topo.wrap("client") + [python, -m, harness.netlab.linkemu.probe, ...]`);
each prints one JSON line and exits by itself (every loop has a deadline).

    rtt HOST --count N --interval S     ICMP echo RTTs (ns). The reply's time is the
                                        kernel's receive stamp (SO_TIMESTAMPNS), so the
                                        prober's own wake-up is not in the RTT; the
                                        replier is the peer's kernel, no process at all.
    udp-send HOST PORT --count N --sizes 100,1200 --interval S
                                        datagrams carrying their sequence number
    udp-recv HOST PORT --idle S --deadline S
                                        the sequence numbers received, in order
    tcp-sink HOST PORT --deadline S     accept one connection; byte counts over time
    tcp-source HOST PORT --seconds S    send as fast as TCP allows, then close
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

ICMP_ECHO, ICMP_REPLY = 8, 0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def rtt(host: str, count: int, interval: float, payload: int = 56) -> list[int]:
    """RTT in ns of `count` ICMP echoes; -1 for one not answered within 1 s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    ident = os.getpid() & 0xFFFF
    out = []
    for seq in range(count):
        body = bytes(payload)
        head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
        pkt = struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(head + body), ident, seq) + body
        sent = time.time_ns()                       # SO_TIMESTAMPNS is CLOCK_REALTIME
        sock.sendto(pkt, (host, 0))
        deadline = time.monotonic() + 1.0
        got = -1
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data, anc, _, _ = sock.recvmsg(2048, 64)
            except socket.timeout:
                break
            ihl = (data[0] & 15) * 4
            typ, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
            if typ == ICMP_REPLY and rid == ident and rseq == seq:
                stamp = next((struct.unpack("qq", d[:16]) for lvl, t, d in anc
                              if lvl == socket.SOL_SOCKET and t == SO_TIMESTAMPNS), None)
                got = (stamp[0] * 10**9 + stamp[1] if stamp else time.time_ns()) - sent
                break
        out.append(got)
        time.sleep(interval)
    return out


def udp_send(host: str, port: int, count: int, sizes: list[int], interval: float) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for seq in range(count):
        size = max(sizes[seq % len(sizes)], 8)
        sock.sendto(struct.pack("!Q", seq) + bytes(size - 8), (host, port))
        if interval:
            time.sleep(interval)
    return count


def udp_recv(host: str, port: int, idle: float, deadline: float, ready: bool = True) -> list[int]:
    """Sequence numbers in arrival order; stops `idle` s after the last datagram (once
    one came) or at `deadline` s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, port))
    if ready:
        print(json.dumps({"ready": True}), flush=True)
    end = time.monotonic() + deadline
    seqs: list[int] = []
    while time.monotonic() < end:
        sock.settimeout(idle if seqs else max(end - time.monotonic(), 0.001))
        try:
            data = sock.recv(65535)
        except socket.timeout:
            if seqs:
                break
            continue
        seqs.append(struct.unpack_from("!Q", data)[0])
    return seqs


def tcp_sink(host: str, port: int, deadline: float) -> dict:
    """Accept one connection and read it to the end (or the deadline): total bytes and
    (t since first byte, bytes so far) samples every ~50 ms."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1)
    print(json.dumps({"ready": True}), flush=True)
    end = time.monotonic() + deadline
    srv.settimeout(deadline)
    conn, _ = srv.accept()
    total, first, samples, last_sample = 0, None, [], 0.0
    buf = bytearray(1 << 20)
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        conn.settimeout(left)
        try:
            n = conn.recv_into(buf)
        except socket.timeout:
            break
        if not n:
            break
        now = time.monotonic()
        if first is None:
            first = now
        total += n
        if now - last_sample >= 0.05:
            samples.append((now - first, total))
            last_sample = now
    if first is not None:
        samples.append((time.monotonic() - first, total))
    return {"bytes": total, "samples": samples}


def tcp_source(host: str, port: int, seconds: float) -> int:
    sock = socket.create_connection((host, port), timeout=5)
    chunk = bytes(1 << 16)
    end = time.monotonic() + seconds
    sent = 0
    sock.settimeout(max(seconds, 1))
    while time.monotonic() < end:
        try:
            sent += sock.send(chunk)
        except socket.timeout:
            break
    sock.close()
    return sent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.netlab.linkemu.probe")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("rtt")
    p.add_argument("host")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--payload", type=int, default=56)
    for name in ("udp-send", "udp-recv", "tcp-sink", "tcp-source"):
        q = sub.add_parser(name)
        q.add_argument("host")
        q.add_argument("port", type=int)
        q.add_argument("--count", type=int, default=100)
        q.add_argument("--sizes", default="100")
        q.add_argument("--interval", type=float, default=0.0)
        q.add_argument("--idle", type=float, default=0.5)
        q.add_argument("--deadline", type=float, default=10.0)
        q.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args(argv)
    if a.cmd == "rtt":
        result: object = rtt(a.host, a.count, a.interval, a.payload)
    elif a.cmd == "udp-send":
        result = udp_send(a.host, a.port, a.count, [int(s) for s in a.sizes.split(",")],
                          a.interval)
    elif a.cmd == "udp-recv":
        result = udp_recv(a.host, a.port, a.idle, a.deadline)
    elif a.cmd == "tcp-sink":
        result = tcp_sink(a.host, a.port, a.deadline)
    else:
        result = tcp_source(a.host, a.port, a.seconds)
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
