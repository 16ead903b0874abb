"""One small async interface for every protocol's client.

A client is built for one `Target` and one connection policy, and takes requests as
OpenAI-shaped dicts (the same dict means the same thing on every protocol; the gRPC
client translates it to protobuf). Unary calls return the decoded vectors and their
timings; streams return every token with its receive time and the server's emit stamp.

Clock: every `*_ns` field is `time.perf_counter_ns()`, which on Linux is
CLOCK_MONOTONIC, the clock the server stamps tokens with, so `recv_ns - emit_ns` is an
exact one-way delay on one host (namespaces included).

Errors raised by any client derive from `ClientError`; `kind` is the error class that
result files count by.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

clock_ns = time.perf_counter_ns


# ---------------------------------------------------------------- errors

class ClientError(Exception):
    kind: ClassVar[str] = "client"


class ConnectError(ClientError):
    """The connection (TCP, TLS, QUIC, upgrade) could not be set up."""
    kind = "connect"


class FallbackError(ClientError):
    """The peer negotiated another protocol than the one asked for: never a result."""
    kind = "fallback"


class ServerError(ClientError):
    """The server answered with an error in its own protocol's terms."""
    kind = "server"

    def __init__(self, status: int | str, message: str, body: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        if str(status) in _AUTH_STATUSES:
            self.kind = "auth"      # a refused key is the caller's setup, not a failing server


# HTTP 401/403 and their gRPC and WebSocket counterparts.
_AUTH_STATUSES = {"401", "403", "UNAUTHENTICATED", "PERMISSION_DENIED",
                  "StatusCode.UNAUTHENTICATED", "StatusCode.PERMISSION_DENIED"}


class ProtocolViolation(ClientError):
    """The peer sent something this client cannot parse."""
    kind = "protocol"


class ConnectionLost(ClientError):
    """The connection closed or reset before the response was complete."""
    kind = "connection_lost"


# Failures of the path (clients/transport/connect.py classifies them): each its own kind, so a
# result counts wrong CAs apart from expired certificates, refusals and silent peers.
# Subclasses of ConnectError: code that catches any failed setup still does.

class Refused(ConnectError):
    """Nothing listens there: the peer answered the TCP SYN with a reset (or ICMP)."""
    kind = "refused"


class RequestTimeout(ClientError):
    """No complete response within the request timeout (the blocking paths; the async
    ones are cancelled by the load generator's watchdog and recorded the same way)."""
    kind = "timeout"


class PhaseTimeout(ConnectError):
    """One connection step (TCP connect, TLS/QUIC handshake, upgrade) got no answer in
    time: a blackholed link, or a listener that never accepts."""
    kind = "phase_timeout"


class TlsError(ConnectError):
    """The TLS handshake failed for another reason than the certificate checks below
    (alert, protocol version, no shared cipher...)."""
    kind = "tls"


class TlsUntrusted(TlsError):
    """The server's certificate chains to no CA the client trusts."""
    kind = "tls_untrusted"


class TlsExpired(TlsError):
    """The server's certificate is outside its validity period (expired or not yet valid)."""
    kind = "tls_expired"


class TlsNameMismatch(TlsError):
    """The server's certificate does not name the host the client asked for (SNI)."""
    kind = "tls_name_mismatch"


# ---------------------------------------------------------------- target and results

@dataclass(frozen=True)
class Target:
    host: str = "127.0.0.1"
    port: int = 0
    tls: bool | None = None         # None: the protocol's default (h1 clear, h2/h3 TLS);
                                    # False on rest-h2/sse-h2 means cleartext h2c
    ca: Path | None = None          # CA file clients verify the server against
    server_name: str = "localhost"  # SNI and :authority
    api_key: str | None = None
    base_path: str = "/v1"          # HTTP path prefix of the OpenAI API (external targets)
    tls_version: str | None = None  # "1.2" / "1.3": offer exactly this version; None: any
    dns: tuple[str, int] | None = None   # resolve `host` through this DNS server (the
    dns_cache: bool = True               # lab's DNS step), with or without a cache
    resumption: str | None = None   # new connections resume the last TLS session:
                                    # "session"; QUIC also sends the request as 0-RTT
                                    # early data: "0rtt". None: full handshakes
    connect_timeout_s: float = 10.0 # bounds each connection step (TCP connect, TLS
                                    # handshake, upgrade): past it, PhaseTimeout

    @property
    def authority(self) -> str:
        return f"{self.server_name}:{self.port}"


@dataclass
class UnaryResult:
    vectors: np.ndarray             # (n_inputs, dimensions), little-endian float32
    t_start_ns: int                 # request start (before connecting, if it had to)
    t_first_byte_ns: int            # first response byte (headers / first frame)
    t_received_ns: int              # response fully received
    t_decoded_ns: int               # response decoded into vectors
    payload_up: int                 # serialized request message bytes
    payload_down: int               # serialized response message bytes
    server_time_us: float | None    # server's own time for the request, as it reported
    new_connection: bool = False
    connect_ns: int | None = None   # connection setup (TCP + TLS / QUIC / upgrade)
    extra: dict[str, Any] = field(default_factory=dict)   # engine-specific (curl_phases)

    @property
    def latency_ns(self) -> int:
        """Start to response fully received and decoded (DESIGN section 4)."""
        return self.t_decoded_ns - self.t_start_ns

    @property
    def decode_ns(self) -> int:
        return self.t_decoded_ns - self.t_received_ns


@dataclass(frozen=True)
class StreamToken:
    index: int                      # the server's token index
    text: str
    emit_ns: int | None             # server CLOCK_MONOTONIC at emission (None: a server
                                    # that does not stamp, e.g. an external endpoint)
    recv_ns: int                    # client receive time of the chunk that carried it


@dataclass
class StreamResult:
    tokens: list[StreamToken]
    t_start_ns: int
    t_first_byte_ns: int            # first response byte (headers or first message)
    t_end_ns: int                   # end of stream received
    payload_up: int
    payload_down: int
    server_time_us: float | None
    usage: dict[str, int] | None = None
    new_connection: bool = False
    connect_ns: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ttft_ns(self) -> int | None:
        return self.tokens[0].recv_ns - self.t_start_ns if self.tokens else None

    @property
    def e2e_ns(self) -> int:
        return self.t_end_ns - self.t_start_ns


# ---------------------------------------------------------------- the interface

class Client(abc.ABC):
    """One protocol's client for one target.

    reuse=True keeps connections open between calls (multiplexed protocols share one
    connection among concurrent calls; HTTP/1.1 keeps an idle pool); reuse=False opens
    a new connection for every call and closes it afterwards.
    """

    protocol: ClassVar[str]
    streaming: ClassVar[bool]

    def __init__(self, target: Target, *, reuse: bool = True) -> None:
        self.target = target
        self.reuse = reuse

    async def embed(self, request: dict[str, Any]) -> UnaryResult:
        raise TypeError(f"{self.protocol} is a streaming protocol; use generate()")

    async def generate(self, request: dict[str, Any]) -> StreamResult:
        raise TypeError(f"{self.protocol} is a unary protocol; use embed()")

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every connection this client holds."""

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def auth_header(target: Target) -> list[tuple[bytes, bytes]]:
    if target.api_key is None:
        return []
    return [(b"authorization", b"Bearer " + target.api_key.encode())]
