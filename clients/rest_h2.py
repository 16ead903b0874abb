"""`rest-h2`: Unary embeddings over HTTP/2 (see clients.transport.http2 for the transport)."""

from clients.http_api import RestClient
from clients.transport.http2 import Http2Transport


class RestH2Client(RestClient):
    protocol = "rest-h2"
    transport_class = Http2Transport


CLIENT = RestH2Client
