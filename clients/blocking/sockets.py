"""The blocking transports' one view of a connection, so a test can replace it.

`TcpConnection` is the real one (a blocking TCP socket with TCP_NODELAY, the kernel
timing each read and write, counted by the wire meter); a test passes its own object
with the same five members to drive a transport from scripted bytes, in memory.
"""

from __future__ import annotations

import select
import socket
import struct
from typing import Protocol

from clients.transport.wire import METER


class Stale(Exception):
    """A kept connection turned out closed before any byte of the response: the server
    closed it while idle. The request is sent once more on a new connection."""


class Connection(Protocol):
    local_port: int | None

    def sendall(self, data: bytes) -> None: ...
    def recv_into(self, view: memoryview) -> int: ...        # BlockingIOError: timed out
    def set_timeout(self, seconds: float) -> None: ...       # per read and write
    def readable_now(self) -> bool: ...                      # bytes waiting (no wait)
    def close(self) -> None: ...


def _timeval(seconds: float) -> bytes:
    seconds = max(seconds, 0.001)
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))


class TcpConnection:
    """A connected blocking TCP socket. Reads and writes are timed by the kernel
    (SO_RCVTIMEO / SO_SNDTIMEO: an expired one raises BlockingIOError), so a request on
    time costs no timeout syscalls."""

    __slots__ = ("sock", "_poll", "local_port", "recv_into", "sendall")

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(None)           # blocking; the kernel times reads and writes
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self.local_port = sock.getsockname()[1]
        self.recv_into, self.sendall = sock.recv_into, sock.sendall    # no extra call
        METER.track(sock)

    @classmethod
    def open(cls, host: str, port: int, timeout_s: float) -> "TcpConnection":
        """Connect (TimeoutError, ConnectionRefusedError, OSError as socket raises)."""
        return cls(socket.create_connection((host, port), timeout=timeout_s))

    def set_timeout(self, seconds: float) -> None:
        tv = _timeval(seconds)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)

    def readable_now(self) -> bool:
        return bool(self._poll.poll(0))

    def close(self) -> None:
        METER.closing(self.sock)
        self.sock.close()


class StreamConnection:
    """A connected blocking TCP or TLS socket timed by Python's socket timeout (an
    expired read raises TimeoutError): the blocking HTTP/2 transport's connection, TLS
    included (a TLS socket may hold decrypted bytes that poll() does not see)."""

    __slots__ = ("sock", "_poll", "_tls", "local_port", "recv_into", "sendall", "set_timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._tls = hasattr(sock, "pending")
        self.local_port = sock.getsockname()[1]
        self.recv_into, self.sendall = sock.recv_into, sock.sendall
        self.set_timeout = sock.settimeout
        METER.track(sock)

    def readable_now(self) -> bool:
        return bool(self._poll.poll(0)) or (self._tls and self.sock.pending() > 0)

    def recv_now(self, view: memoryview) -> int | None:
        """One read of what is there without waiting; None if nothing (errors and EOF
        are left to the next blocking read, which reports them)."""
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0.0)
        try:
            return self.sock.recv_into(view)
        except OSError:         # BlockingIOError, ssl.SSLWantReadError: nothing there
            return None
        finally:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        METER.closing(self.sock)
        self.sock.close()
