"""The blocking HTTP/1.1 transport on scripted bytes and an explicit clock: every read,
stamp, retry and timeout checked exactly, in memory (no socket, no thread, no sleep).
The same transport against real servers: tests/integration/test_blocking_path.py."""

from __future__ import annotations

import pytest

from clients.base import (ConnectionLost, FallbackError, ProtocolViolation, RequestTimeout,
                          Target)
from clients.blocking.http1 import BUFFER, BlockingH1Transport

MS = 1_000_000
TIMEOUT = object()              # a scripted read that the kernel's SO_RCVTIMEO ends


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * MS

    def __call__(self) -> int:
        return self.now


class FakeConnection:
    """One scripted connection: each read returns the next chunk after its delay (ns)."""

    def __init__(self, clock: Clock, reads: list[tuple[int, bytes | object]]) -> None:
        self.clock, self.reads = clock, list(reads)
        self.sent: list[bytes] = []
        self.timeouts: list[float] = []
        self.closed = False
        self.local_port = 40000

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def recv_into(self, view: memoryview) -> int:
        delay, chunk = self.reads.pop(0)
        self.clock.now += delay
        if chunk is TIMEOUT:
            raise BlockingIOError("timed out")
        view[:len(chunk)] = chunk
        return len(chunk)

    def set_timeout(self, seconds: float) -> None:
        self.timeouts.append(seconds)

    def readable_now(self) -> bool:
        return bool(self.reads) and self.reads[0][0] == 0

    def close(self) -> None:
        self.closed = True


class Network:
    """Hands out the scripted connections in order, and remembers them."""

    def __init__(self, clock: Clock, *scripts: list) -> None:
        self.clock, self.scripts, self.opened = clock, list(scripts), []

    def __call__(self, host: str, port: int, timeout_s: float) -> FakeConnection:
        self.clock.now += 100_000                     # the TCP connect: 0.1 ms
        conn = FakeConnection(self.clock, self.scripts.pop(0))
        self.opened.append(conn)
        return conn


def transport(*scripts: list, timeout_s: float = 1.0) -> tuple[BlockingH1Transport, Network,
                                                                Clock]:
    clock = Clock()
    net = Network(clock, *scripts)
    return (BlockingH1Transport(Target(port=8000), timeout_s=timeout_s, connect=net,
                                clock=clock), net, clock)


def response(body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra
            + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def get(t: BlockingH1Transport):
    return t.fetch_sync(b"POST", b"/v1/embeddings", [(b"content-type", b"application/json")],
                        b"{}")


def test_one_read_response_and_its_stamps():
    t, net, clock = transport([(2 * MS, response(b'{"ok":1}'))])
    t0 = clock.now
    resp, body, t_received, _ = get(t)
    assert (resp.status, bytes(body)) == (200, b'{"ok":1}')
    assert resp.new_connection and resp.connect_ns == 100_000
    assert resp.t_sent_ns == t0 + 100_000                        # after connect, before reply
    assert resp.t_first_byte_ns == t_received == t0 + 100_000 + 2 * MS
    assert resp.header(b"content-type") == b"application/json"
    assert net.opened[0].sent[0].startswith(b"POST /v1/embeddings HTTP/1.1\r\n")


def test_a_body_over_several_reads_is_stamped_at_its_last_read():
    body = bytes(range(256)) * 1200                              # larger than the buffer
    assert len(body) > BUFFER
    whole = response(body)
    reads = [(1 * MS, whole[:1000]), (3 * MS, whole[1000:BUFFER]),
             (2 * MS, whole[BUFFER:])]
    t, net, clock = transport(reads)
    t0 = clock.now
    resp, got, t_received, _ = get(t)
    assert bytes(got) == body
    assert resp.t_first_byte_ns == t0 + 100_000 + 1 * MS
    assert t_received == t0 + 100_000 + 6 * MS


def test_chunked_body_and_interim_responses():
    wire = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n")
    t, _, _ = transport([(MS, wire), (MS, b"0\r\n\r\n")])
    resp, body, _, _ = get(t)
    assert (resp.status, bytes(body)) == (200, b"hello world")


def test_keep_alive_reuses_and_connection_close_reconnects():
    t, net, _ = transport([(MS, response(b"1")), (MS, response(b"2", b"connection: close\r\n"))],
                          [(MS, response(b"3"))])
    bodies = [bytes(get(t)[1]) for _ in range(3)]
    assert bodies == [b"1", b"2", b"3"]
    assert len(net.opened) == 2 and net.opened[0].closed and not net.opened[1].closed


def test_a_stale_keep_alive_connection_is_retried_once_on_a_new_one():
    t, net, _ = transport([(MS, response(b"1")), (0, b"")],        # then the server closed
                          [(MS, response(b"2"))])
    get(t)
    resp, body, _, _ = get(t)
    assert bytes(body) == b"2" and resp.new_connection
    assert net.opened[1].sent == net.opened[0].sent[1:]           # the same request again


def test_eof_mid_response_is_a_lost_connection():
    t, _, _ = transport([(MS, response(b"0123456789")[:-4]), (MS, b"")])
    with pytest.raises(ConnectionLost, match="mid-body"):
        get(t)


def test_a_stalled_read_times_out_at_the_deadline_without_waiting():
    # 0.96 s of the 1 s gone in the first read: the next read's kernel timeout is
    # lowered to what is left, and the kernel ends it there.
    t, net, clock = transport([(960 * MS, b"HTTP/1.1 200 OK\r\n"), (40 * MS, TIMEOUT)])
    with pytest.raises(RequestTimeout, match="within 1.0 s"):
        get(t)
    conn = net.opened[0]
    assert conn.timeouts[0] == 1.0
    assert conn.timeouts[1] == pytest.approx(0.04 - 0.0001, abs=1e-3)
    assert conn.closed                                            # its state is unknown


def test_a_deadline_already_past_raises_before_reading():
    t, _, clock = transport([(1_100 * MS, b"HTTP/1.1 200 OK\r\n")])
    with pytest.raises(RequestTimeout):
        get(t)


@pytest.mark.parametrize("head,error", [
    (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", FallbackError),
    (b"SSH-2.0-OpenSSH\r\n\r\n", ProtocolViolation),
    (b"HTTP/1.1 200 OK\r\ncontent-length: -3\r\n\r\n", ProtocolViolation),
])
def test_bad_heads_are_classed(head, error):
    t, _, _ = transport([(MS, head)])
    with pytest.raises(error):
        get(t)


def test_a_body_that_runs_to_the_connection_close():
    t, net, _ = transport([(MS, b"HTTP/1.1 200 OK\r\n\r\nabc"), (MS, b"def"), (MS, b"")])
    _, body, _, _ = get(t)
    assert bytes(body) == b"abcdef" and net.opened[0].closed


def test_response_waiting_says_whether_bytes_are_there():
    t, _, _ = transport([(MS, response(b"1")), (0, response(b"2"))])
    get(t)
    assert t.response_waiting()
