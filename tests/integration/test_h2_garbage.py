"""Garbage after the HTTP/2 preface gets GOAWAY with the right error code, then the
connection closes (hypercorn, h2c): it is neither held open nor dropped silently."""

from __future__ import annotations

import socket
import time

import pytest

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
PROTOCOL_ERROR, FRAME_SIZE_ERROR = 1, 6
GOAWAY = 7


def frames_after(port: int, garbage: bytes) -> list[tuple[int, bytes]]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(PREFACE)
        time.sleep(0.1)
        s.sendall(garbage)
        data = b""
        while chunk := s.recv(65536):       # the server closes: recv returns b""
            data += chunk
    frames, i = [], 0
    while i + 9 <= len(data):
        length = int.from_bytes(data[i:i + 3], "big")
        frames.append((data[i + 3], data[i + 9:i + 9 + length]))
        i += 9 + length
    return frames


@pytest.mark.parametrize("garbage, code", [
    (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", PROTOCOL_ERROR),        # DATA on stream 0
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", FRAME_SIZE_ERROR),           # HTTP/1.1 text
    (b"\xff" * 64, FRAME_SIZE_ERROR),
])
def test_garbage_gets_goaway_then_close(servers, garbage, code):
    srv = servers.start("h2", extra=["--h2c-port", "0"])
    frames = frames_after(srv.info["h2c_port"], garbage)
    goaway = [payload for kind, payload in frames if kind == GOAWAY]
    assert goaway, frames
    assert int.from_bytes(goaway[-1][4:8], "big") == code
