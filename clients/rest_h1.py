"""`rest-h1`: Unary embeddings over HTTP/1.1 (see clients.transport.http1 for the transport)."""

from clients.http_api import RestClient
from clients.transport.http1 import Http1Transport


class RestH1Client(RestClient):
    protocol = "rest-h1"
    transport_class = Http1Transport


CLIENT = RestH1Client
