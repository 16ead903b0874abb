"""`sse-h2`: Streamed chat tokens (SSE) over HTTP/2 (see clients.transport.http2 for the transport)."""

from clients.http_api import SseClient
from clients.transport.http2 import Http2Transport


class SseH2Client(SseClient):
    protocol = "sse-h2"
    transport_class = Http2Transport


CLIENT = SseH2Client
