"""rest-h3: OpenAI embeddings (unary JSON) over HTTP/3 (aioquic)."""

from __future__ import annotations

from clients.transport.http3 import Http3Transport
from clients.http_api import RestClient


class RestH3Client(RestClient):
    protocol = "rest-h3"
    transport_class = Http3Transport


CLIENT = RestH3Client
