"""What every server process is told at start (parsed by servers.__main__)."""

from __future__ import annotations

from dataclasses import dataclass, field

from servers.core import Limits

# HTTP/1.1: a request head must be complete this long after a connection opens or a
# request begins (slowloris), and a keep-alive connection may idle this long.
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_IDLE_TIMEOUT_S = 30.0
from servers.tls import TlsFiles


@dataclass(frozen=True)
class ServerOptions:
    kind: str                        # h1 h2 h3 grpc ws
    host: str = "127.0.0.1"          # loopback unless told otherwise
    port: int = 0                    # 0: the OS picks; the real port is reported on ready
    api_key: str | None = None       # when set: 401 / UNAUTHENTICATED without it
    limits: Limits = field(default_factory=Limits)
    tls: TlsFiles | None = None      # h2 (TCP) and h3 (QUIC) serve TLS from these
    h2c_port: int | None = None      # h2 only: also serve cleartext h2c on this port
    tls_version: str = "1.3"          # minimum TLS version offered by h2 ("1.2" or "1.3")
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S   # h1: a request head must arrive in
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S       # h1: an idle keep-alive connection
    # Browser pages allowed to call (--cors): None = same-origin only, ("*",) = any, or
    # origins ("http://localhost:8000"). HTTP kinds: CORS (servers/cors.py); ws: Origin.
    cors_origins: tuple[str, ...] | None = None
