"""`sse-h2`: Streamed chat tokens (SSE) over HTTP/2 (see clients.http2 for the transport)."""

from .http_api import SseClient
from .http2 import Http2Transport


class SseH2Client(SseClient):
    protocol = "sse-h2"
    transport_class = Http2Transport


CLIENT = SseH2Client
