"""HTTP/1.1 closes connections whose request head does not arrive in time (slowloris)
and idle keep-alive connections, at the times the flags give."""

from __future__ import annotations

import socket
import time


def closed_after(port: int, send: bytes, limit_s: float) -> float | None:
    """Seconds until the server closed the connection, or None if it did not in time."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as s:
        t0 = time.monotonic()
        if send:
            s.sendall(send)
        try:
            while s.recv(65536):
                pass                      # a response to a complete request, if any
        except socket.timeout:
            return None
        return time.monotonic() - t0


def test_a_trickled_or_absent_head_is_cut_off(servers):
    srv = servers.start("h1", extra=["--header-timeout-s", "1", "--idle-timeout-s", "30"])
    for partial in (b"", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n"):
        took = closed_after(srv.port, partial, limit_s=5)
        assert took is not None and 0.8 < took < 3, took


def test_an_idle_keep_alive_connection_is_closed(servers):
    srv = servers.start("h1", extra=["--header-timeout-s", "5", "--idle-timeout-s", "1"])
    took = closed_after(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", limit_s=5)
    assert took is not None and 0.8 < took < 3, took


def test_many_slow_connections_are_not_all_held(servers):
    srv = servers.start("h1", extra=["--header-timeout-s", "1"])
    socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(200)]
    try:
        time.sleep(2.5)
        for s in socks:
            s.settimeout(2)
        closed = sum(1 for s in socks if s.recv(1) == b"")
        assert closed == len(socks)
    finally:
        for s in socks:
            s.close()
