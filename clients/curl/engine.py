"""The libcurl engine: the REST and SSE cells with clients.curl.transport's transports.

Same OpenAI semantics as the Python engine (clients.http_api's RestClient / SseClient),
with the HTTP work done by libcurl through pycurl:

    client = ENGINES["rest-h2"](target, reuse=True)
    result = await client.embed({"input": ["hi"], "dimensions": 8})
"""

from __future__ import annotations

import re

from clients.base import Client
from clients.curl.transport import Curl1Transport, Curl2Transport, Curl3Transport
from clients.http_api import RestClient, SseClient


class CurlRestH1Client(RestClient):
    protocol = "rest-h1"
    transport_class = Curl1Transport


class CurlRestH2Client(RestClient):
    protocol = "rest-h2"
    transport_class = Curl2Transport


class CurlRestH3Client(RestClient):
    protocol = "rest-h3"
    transport_class = Curl3Transport


class CurlSseH1Client(SseClient):
    protocol = "sse-h1"
    transport_class = Curl1Transport


class CurlSseH2Client(SseClient):
    protocol = "sse-h2"
    transport_class = Curl2Transport


class CurlSseH3Client(SseClient):
    protocol = "sse-h3"
    transport_class = Curl3Transport


ENGINES: dict[str, type[Client]] = {c.protocol: c for c in (
    CurlRestH1Client, CurlRestH2Client, CurlRestH3Client,
    CurlSseH1Client, CurlSseH2Client, CurlSseH3Client)}


def engine_version() -> str:
    """e.g. 'libcurl 8.23.0 (pycurl 7.49.0, OpenSSL 3.6.5, nghttp2 1.70.0, ngtcp2 1.25.0,
    nghttp3 1.18.0)', from pycurl.version: the libraries that do the protocol work."""
    import pycurl

    parts = dict(re.findall(r"([A-Za-z0-9_.-]+)/(\S+)", pycurl.version))
    libs = [f"pycurl {parts.get('PycURL', '?')}"]
    tls = next((f"{k} {v}" for k, v in parts.items()
                if k in ("OpenSSL", "BoringSSL", "quictls", "LibreSSL", "wolfSSL", "GnuTLS",
                         "rustls-ffi", "mbedTLS")), None)
    if tls:
        libs.append(tls)
    libs += [f"{k} {parts[k]}" for k in ("nghttp2", "ngtcp2", "nghttp3", "quiche") if k in parts]
    return f"libcurl {parts.get('libcurl', '?')} ({', '.join(libs)})"
