"""The protocol matrix: ids are a user-facing contract (CLI, YAML, result files)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProtocolSpec:
    id: str
    server: str          # server kind that serves it: h1 h2 h3 grpc ws
    streaming: bool      # server stream of tokens (else unary embedding)
    transport: str       # what the wire carries, for tables
    client_module: str   # clients.<module> holds its Client class


PROTOCOLS: dict[str, ProtocolSpec] = {p.id: p for p in (
    ProtocolSpec("rest-h1", "h1", False, "HTTP/1.1 over TCP", "rest_h1"),
    ProtocolSpec("rest-h2", "h2", False, "HTTP/2 over TLS (ALPN h2)", "rest_h2"),
    ProtocolSpec("rest-h3", "h3", False, "HTTP/3 over QUIC", "rest_h3"),
    ProtocolSpec("grpc", "grpc", False, "gRPC unary (HTTP/2)", "grpc.unary"),
    ProtocolSpec("ws", "ws", False, "WebSocket messages", "ws.unary"),
    ProtocolSpec("sse-h1", "h1", True, "SSE over HTTP/1.1", "sse_h1"),
    ProtocolSpec("sse-h2", "h2", True, "SSE over HTTP/2 (TLS)", "sse_h2"),
    ProtocolSpec("sse-h3", "h3", True, "SSE over HTTP/3", "sse_h3"),
    ProtocolSpec("grpc-stream", "grpc", True, "gRPC server streaming", "grpc.stream"),
    ProtocolSpec("ws-stream", "ws", True, "WebSocket message stream", "ws.stream"),
)}

SERVER_KINDS = ("h1", "h2", "h3", "grpc", "ws", "granian-h1", "granian-h2",
                "caddy-h1", "caddy-h2", "caddy-h3", "fastapi-h1", "fastapi-h2", "fastapi-h3")
UNARY = tuple(p for p, s in PROTOCOLS.items() if not s.streaming)
# Each unary protocol's streaming sibling on the same server (a pipeline's answer).
STREAM_OF = {"rest-h1": "sse-h1", "rest-h2": "sse-h2", "rest-h3": "sse-h3",
             "grpc": "grpc-stream", "ws": "ws-stream"}
STREAMING = tuple(p for p, s in PROTOCOLS.items() if s.streaming)


def spec(protocol_id: str) -> ProtocolSpec:
    try:
        return PROTOCOLS[protocol_id]
    except KeyError:
        raise KeyError(f"unknown protocol {protocol_id!r}; known: "
                       f"{', '.join(PROTOCOLS)}") from None
