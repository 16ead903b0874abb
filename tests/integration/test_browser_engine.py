"""The browser engine (clients/browser/): headless Chromium against the real servers.

Skipped, with the reason, only where Chromium is absent (apt-get install chromium);
.ci/run installs it, so CI runs these.
"""

from __future__ import annotations

import statistics
import urllib.request

import pytest

from clients import client_class, open_client
from clients.base import ClientError, ConnectError, ServerError, Target, TlsUntrusted
from clients.browser import ENGINES, browser_unavailable, engine_version
from base.cells import parse_cell
from harness.run.implementations import client_engine
from servers import core
from servers.http import browser_page
from servers.tls import ensure_tls_files

pytestmark = pytest.mark.skipif(browser_unavailable() is not None,
                                reason=browser_unavailable() or "")

CHAT = {"model": "wirebench-fake-1", "messages": [{"role": "user", "content": "hi browser"}],
        "max_tokens": 16, "stream": True, "stream_options": {"include_usage": True},
        "wirebench": {"itl_ms": 2, "seed": 5}}
# server kind, extra flags, protocol
CELLS = {"sse-h1": ("h1", []), "sse-h2": ("h2", []), "ws-stream": ("ws", [])}


def target(servers, tls_files, protocol: str, **kw) -> Target:
    kind, flags = CELLS[protocol]
    return Target(port=servers.start(kind, extra=flags).port, ca=tls_files.ca, **kw)


def test_registry_cells_and_version():
    assert set(ENGINES) == {"sse-h1", "sse-h2", "ws-stream"}
    for pid in ENGINES:
        assert client_class(pid, "browser") is ENGINES[pid]
        assert parse_cell(f"{pid}+browser").label == f"{pid}+browser"
    with pytest.raises(ValueError, match="drives only"):
        parse_cell("rest-h1+browser")
    with pytest.raises(ValueError):
        parse_cell("sse-h3+browser")
    assert client_engine(parse_cell("sse-h1+browser")).startswith("Chromium 1")
    assert "headless" in engine_version()


def test_page_is_served_by_every_server(servers, tls_files):
    for kind in ("h1", "ws", "fastapi-h1"):
        port = servers.start(kind).port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench.html", timeout=10) as r:
            assert r.status == 200 and r.read() == browser_page.PAGE
            assert r.headers["content-type"].startswith("text/html")
            assert r.headers["cross-origin-embedder-policy"] == "require-corp"


@pytest.mark.parametrize("protocol", list(CELLS))
async def test_streams_tokens_with_counts_and_stamps(servers, tls_files, protocol):
    params = core.parse_generate_request(CHAT, chat=True)
    client = open_client(protocol, target(servers, tls_files, protocol), engine="browser")
    try:
        first = await client.generate(CHAT)
        second = await client.generate({**CHAT, "max_tokens": 7})
    finally:
        await client.close()
    assert [t.index for t in first.tokens] == list(range(16))
    assert [t.text for t in first.tokens] == core.tokens_for(params)
    assert len(second.tokens) == 7 and second.usage["completion_tokens"] == 7
    assert first.usage["completion_tokens"] == 16
    assert first.server_time_us and first.server_time_us > 0
    assert first.extra["wire_protocol"] == {"sse-h1": "http/1.1", "sse-h2": "h2",
                                            "ws-stream": "websocket"}[protocol]
    for r in (first, second):
        assert r.t_start_ns < r.t_first_byte_ns <= r.tokens[0].recv_ns <= r.t_end_ns
        assert r.payload_up > 50 and r.payload_down > 100 * len(r.tokens) / 2
        # Page times mapped onto CLOCK_MONOTONIC: every token arrives after the server
        # emitted it (within the mapping's stated error), and not long after.
        slack = (r.extra["clock_error_us"] + 10) * 1000
        for tok in r.tokens:
            assert tok.emit_ns - slack <= tok.recv_ns <= tok.emit_ns + 50_000_000
            assert r.t_start_ns - slack <= tok.emit_ns
    assert first.new_connection and not second.new_connection


async def test_server_error_is_a_server_error(servers, tls_files):
    for protocol in ("sse-h1", "ws-stream"):
        client = open_client(protocol, target(servers, tls_files, protocol), engine="browser")
        try:
            with pytest.raises(ServerError) as err:
                await client.generate({**CHAT, "max_tokens": 0})
            assert str(err.value.status) == "400"
            assert len((await client.generate(CHAT)).tokens) == 16      # still usable
        finally:
            await client.close()


async def test_api_key_reaches_the_server(servers, tls_files):
    for kind, protocol in (("h1", "sse-h1"), ("ws", "ws-stream")):
        port = servers.start(kind, extra=["--api-key", "sk-browser"]).port
        good = open_client(protocol, Target(port=port, api_key="sk-browser"), engine="browser")
        bad = open_client(protocol, Target(port=port), engine="browser")
        try:
            assert len((await good.generate(CHAT)).tokens) == 16
            # No key: the page loads (it holds nothing), the request is refused.
            with pytest.raises(ClientError, match="401|failed"):
                await bad.generate(CHAT)
        finally:
            await good.close()
            await bad.close()


async def test_h2_needs_tls_and_a_verified_server(servers, tls_files, tmp_path):
    with pytest.raises(ValueError, match="only over TLS"):
        ENGINES["sse-h2"](Target(port=1, tls=False))
    # A cleartext HTTP/1.1 server where TLS is expected: a connect error, no result.
    client = ENGINES["sse-h2"](Target(port=servers.start("h1").port, ca=tls_files.ca))
    try:
        with pytest.raises(ConnectError):
            await client.generate(CHAT)
    finally:
        await client.close()
    # The h2 server checked against another CA: untrusted, as for the Python clients.
    other = ensure_tls_files(tmp_path / "other")
    client = ENGINES["sse-h2"](Target(port=servers.start("h2").port, ca=other.ca))
    try:
        with pytest.raises(TlsUntrusted):
            await client.generate(CHAT)
    finally:
        await client.close()


async def test_ttft_agrees_with_the_python_client(servers, tls_files):
    """Acceptance: with no emulated delay and TTFT set by the server's schedule (20 ms),
    the browser's TTFT p50 agrees with the Python SSE client's within 5 ms."""
    request = {**CHAT, "max_tokens": 5, "wirebench": {"ttft_ms": 20, "itl_ms": 2, "seed": 1}}
    t = target(servers, tls_files, "sse-h1")
    browser, python = open_client("sse-h1", t, engine="browser"), open_client("sse-h1", t)
    try:
        for c in (browser, python):                     # warm: launch, page, connection
            await c.generate(request)
        ttft = {"browser": [], "python": []}
        for _ in range(15):                             # interleaved: same conditions
            ttft["browser"].append((await browser.generate(request)).ttft_ns / 1e6)
            ttft["python"].append((await python.generate(request)).ttft_ns / 1e6)
    finally:
        await browser.close()
        await python.close()
    p50 = {k: statistics.median(v) for k, v in ttft.items()}
    print(f"TTFT p50: browser {p50['browser']:.2f} ms, python {p50['python']:.2f} ms")
    assert p50["python"] >= 19.5 and p50["browser"] >= 19.5, p50
    assert abs(p50["browser"] - p50["python"]) < 5, p50


async def test_eventsource_on_the_get_form_streams_what_fetch_streams(servers, tls_files):
    """The browser's own SSE client on the server's GET form (query parameters): the
    same tokens as the POST that fetch() sends."""
    t = target(servers, tls_files, "sse-h1")
    source = open_client("sse-h1", t, engine="browser", sse_mode="eventsource")
    fetch = open_client("sse-h1", t, engine="browser")
    try:
        e = await source.generate(CHAT)
        f = await fetch.generate(CHAT)
    finally:
        await source.close()
        await fetch.close()
    assert e.extra["browser_mode"] == "eventsource" and f.extra["browser_mode"] == "fetch"
    assert [t.index for t in e.tokens] == list(range(16)) == [t.index for t in f.tokens]
    assert [t.text for t in e.tokens] == [t.text for t in f.tokens]
    assert e.server_time_us and e.payload_down > 0
