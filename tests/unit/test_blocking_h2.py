"""The blocking HTTP/2 transport on scripted frames and an explicit clock, in memory:
stamps, the connection's own frames (SETTINGS, PING, GOAWAY), stream resets and
timeouts checked exactly. Against real servers: tests/integration/test_blocking_h2.py."""

from __future__ import annotations

import hpack
import pytest

from clients.base import ConnectionLost, RequestTimeout, Target

from clients.blocking.http2 import BlockingH2Transport
from clients.framing.h2 import (ACK, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING,
                                PREFACE, RST_STREAM, SETTINGS)
from clients.framing.h2 import frame as _frame

MS = 1_000_000
TIMEOUT = object()


class Clock:
    def __init__(self) -> None:
        self.now = 5_000 * MS

    def __call__(self) -> int:
        return self.now


class RawSocket:
    """What the TCP connect returns: the transport only sets TCP_NODELAY on it."""

    def setsockopt(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, clock: Clock, reads: list) -> None:
        self.clock, self.reads, self.sent, self.closed = clock, list(reads), [], False
        self.local_port = 40001

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def recv_into(self, view: memoryview) -> int:
        delay, chunk = self.reads.pop(0)
        self.clock.now += delay
        if chunk is TIMEOUT:
            raise TimeoutError("timed out")
        view[:len(chunk)] = chunk
        return len(chunk)

    def set_timeout(self, seconds: float) -> None:
        pass

    def readable_now(self) -> bool:
        return bool(self.reads) and self.reads[0][0] == 0

    def recv_now(self, view: memoryview) -> int | None:
        return self.recv_into(view) if self.readable_now() else None

    def close(self) -> None:
        self.closed = True


def transport(*scripts: list, timeout_s: float = 1.0):
    clock = Clock()
    scripts_left, opened = list(scripts), []

    def connect(address, timeout):
        clock.now += 100_000
        return RawSocket()

    def wrap(raw):
        conn = FakeConnection(clock, scripts_left.pop(0))
        opened.append(conn)
        return conn

    t = BlockingH2Transport(Target(port=8443, tls=False), timeout_s=timeout_s,
                            connect=connect, wrap=wrap, clock=clock)
    return t, opened, clock


def reply(stream: int, body: bytes, status: bytes = b"200") -> bytes:
    block = hpack.Encoder().encode([(b":status", status), (b"content-type", b"text/plain")])
    return (_frame(HEADERS, END_HEADERS, stream, block)
            + _frame(DATA, END_STREAM, stream, body))


SERVER_SETTINGS = _frame(SETTINGS, 0, 0)


def get(t):
    return t.fetch_sync(b"POST", b"/v1/embeddings", [(b"content-type", b"application/json")],
                        b"{}")


def frames(data: bytes) -> list[tuple[int, int, int]]:
    """(type, flags, stream) of every frame in what the client wrote."""
    out, i = [], 0
    while i < len(data):
        length = int.from_bytes(data[i:i + 3], "big")
        out.append((data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big")))
        i += 9 + length
    return out


def test_a_response_and_its_stamps():
    t, opened, clock = transport([(2 * MS, SERVER_SETTINGS + reply(1, b"hello"))])
    t0 = clock.now
    resp, body, t_received, _ = get(t)
    assert (resp.status, bytes(body)) == (200, b"hello")
    assert resp.t_first_byte_ns == t_received == t0 + 100_000 + 2 * MS
    sent = b"".join(opened[0].sent)
    assert sent.startswith(PREFACE)
    kinds = frames(sent[len(PREFACE):])
    assert (HEADERS, END_HEADERS, 1) in kinds and (DATA, END_STREAM, 1) in kinds
    assert (SETTINGS, ACK, 0) in kinds                        # the server's settings acked


def test_a_ping_is_answered_and_streams_count_up_by_two():
    t, opened, _ = transport([(MS, SERVER_SETTINGS + reply(1, b"1")),
                              (MS, _frame(PING, 0, 0, b"12345678") + reply(3, b"2"))])
    get(t)
    _, body, _, _ = get(t)
    assert bytes(body) == b"2"
    assert _frame(PING, ACK, 0, b"12345678") in opened[0].sent


def test_a_reset_stream_is_an_error_and_the_connection_is_not_reused():
    reset = _frame(RST_STREAM, 0, 1, (2).to_bytes(4, "big"))
    t, opened, _ = transport([(MS, SERVER_SETTINGS + reset)],
                             [(MS, SERVER_SETTINGS + reply(1, b"ok"))])
    with pytest.raises(ConnectionLost, match="server reset stream 1 \\(error code 2\\)"):
        get(t)
    _, body, _, _ = get(t)
    assert bytes(body) == b"ok" and len(opened) == 2 and opened[0].closed


def test_goaway_after_a_response_moves_the_next_request_to_a_new_connection():
    goaway = _frame(GOAWAY, 0, 0, (1).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    t, opened, _ = transport([(MS, SERVER_SETTINGS + reply(1, b"1") + goaway), (0, b"")],
                             [(MS, SERVER_SETTINGS + reply(1, b"2"))])
    get(t)
    resp, body, _, _ = get(t)
    assert bytes(body) == b"2" and len(opened) == 2


def test_a_stalled_read_is_a_timeout_on_the_clock():
    t, opened, _ = transport([(990 * MS, SERVER_SETTINGS), (20 * MS, TIMEOUT)])
    with pytest.raises(RequestTimeout, match="within 1.0 s"):
        get(t)
    assert opened[0].closed
