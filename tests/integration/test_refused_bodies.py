"""A request refused for its key still has its body read: with --api-key, a large
unauthenticated POST must neither wedge the HTTP/3 server (every later QUIC connection
timed out) nor kill a shared HTTP/2 connection (hypercorn dropped it), seen with curl."""

from __future__ import annotations

import io

import pycurl
import pytest

BODY = b'{"input": "' + b"x" * 100_000 + b'"}'
VERSIONS = {"h2": pycurl.CURL_HTTP_VERSION_2TLS, "h3": pycurl.CURL_HTTP_VERSION_3ONLY}


def request(curl: pycurl.Curl, url: str, ca: str, key: str | None, body: bytes | None,
            version: int) -> tuple[int, bytes]:
    out = io.BytesIO()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.CAINFO, ca)
    curl.setopt(pycurl.HTTP_VERSION, version)
    curl.setopt(pycurl.TIMEOUT, 10)           # a wedged stream fails here, not hangs
    curl.setopt(pycurl.WRITEDATA, out)
    headers = ["Content-Type: application/json", "Expect:"]
    if key:
        headers.append(f"Authorization: Bearer {key}")
    curl.setopt(pycurl.HTTPHEADER, headers)
    if body is None:
        curl.setopt(pycurl.HTTPGET, 1)
    else:
        curl.setopt(pycurl.POSTFIELDS, body)
    curl.perform()
    return curl.getinfo(pycurl.RESPONSE_CODE), out.getvalue()


@pytest.mark.parametrize("version", VERSIONS)
def test_unauthenticated_large_body_leaves_the_server_and_connection_usable(servers, tls_files,
                                                                             version):
    srv = servers.start(version, api_key="sk-right")
    base, ca = f"https://localhost:{srv.port}", str(tls_files.ca)
    curl = pycurl.Curl()
    try:
        status, body = request(curl, f"{base}/v1/embeddings", ca, "wrong", BODY,
                               VERSIONS[version])
        assert status == 401 and b"invalid_api_key" in body
        # The same connection (one handle keeps it) answers the right key...
        status, _ = request(curl, f"{base}/v1/embeddings", ca, "sk-right",
                            b'{"input": "ok", "dimensions": 4}', VERSIONS[version])
        assert status == 200 and curl.getinfo(pycurl.NUM_CONNECTS) == 0
    finally:
        curl.close()
    fresh = pycurl.Curl()            # ...and a new connection is served too
    try:
        status, _ = request(fresh, f"{base}/health", ca, None, None, VERSIONS[version])
        assert status == 200
    finally:
        fresh.close()
