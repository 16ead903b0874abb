"""sse-h3: OpenAI chat completion token streams (SSE) over HTTP/3 (aioquic)."""

from __future__ import annotations

from clients.transport.http3 import Http3Transport
from clients.http_api import SseClient


class SseH3Client(SseClient):
    protocol = "sse-h3"
    transport_class = Http3Transport


CLIENT = SseH3Client
