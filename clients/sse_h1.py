"""`sse-h1`: Streamed chat tokens (SSE) over HTTP/1.1 (see clients.transport.http1 for the transport)."""

from clients.http_api import SseClient
from clients.transport.http1 import Http1Transport


class SseH1Client(SseClient):
    protocol = "sse-h1"
    transport_class = Http1Transport


CLIENT = SseH1Client
