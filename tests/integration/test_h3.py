"""rest-h3 and sse-h3 against the real hypercorn + aioquic server, over real UDP sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import orjson
import pytest

from clients.base import ConnectError, ConnectionLost, ServerError, Target
from clients.transport.http3 import Http3Transport
from clients.rest_h3 import RestH3Client
from clients.sse_h3 import SseH3Client
from servers.core import embed_batch, parse_embed_request, parse_generate_request, tokens_for
from servers.launcher import start_server
from servers.tls import ensure_tls_files

EMBED = {"model": "wirebench-embed-1", "input": ["alpha", "beta gamma", "delta"],
         "dimensions": 256}
CHAT = {"model": "wirebench-fake-1", "messages": [{"role": "user", "content": "say hi"}],
        "max_tokens": 12, "stream": True, "wirebench": {"itl_ms": 1}}
# A stream long enough to still be running when the client leaves it.
LONG_CHAT = {**CHAT, "max_tokens": 2000, "wirebench": {"itl_ms": 10}}


@pytest.fixture(scope="module")
def server():
    with start_server("h3") as srv:
        yield srv


@pytest.fixture
def target(server) -> Target:
    return Target(port=server.port, ca=ensure_tls_files().ca)


def expected_vectors(request: dict) -> bytes:
    return embed_batch(parse_embed_request(request)).tobytes()


def open_sockets() -> set[str]:
    """This process's open sockets by inode: a test asserts none of its own are left
    (a set, not a count, since an earlier test's socket may close meanwhile)."""
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:   # the directory listing's own fd, closed since
            continue
        if link.startswith("socket:"):
            sockets.add(link)
    return sockets


async def health_stats(target: Target) -> dict:
    transport = Http3Transport(target, reuse=False)
    try:
        exchange = await transport.request(b"GET", b"/health", [], b"")
        body, _ = await exchange.read_body()
        await exchange.aclose()
    finally:
        await transport.close()
    return orjson.loads(body)["stats"]


# ------------------------------------------------------------------ rest-h3

@pytest.mark.parametrize("encoding_format", ["float", "base64"])
async def test_embed_is_byte_identical(target, encoding_format):
    request = {**EMBED, "encoding_format": encoding_format}
    async with RestH3Client(target) as client:
        first = await client.embed(request)
        second = await client.embed(request)
    assert first.vectors.dtype == "<f4" and first.vectors.shape == (3, 256)
    assert first.vectors.tobytes() == expected_vectors(request)
    assert second.vectors.tobytes() == expected_vectors(request)
    assert first.new_connection and first.connect_ns > 0
    assert not second.new_connection and second.connect_ns is None
    assert first.server_time_us is not None and first.payload_down > 0
    assert first.t_start_ns < first.t_first_byte_ns <= first.t_received_ns <= first.t_decoded_ns


async def test_concurrent_embeds_share_one_connection(target):
    requests = [{**EMBED, "input": [f"text {i}", f"more {i}"]} for i in range(8)]
    async with RestH3Client(target) as client:
        results = await asyncio.gather(*(client.embed(r) for r in requests))
        after = await client.embed(requests[0])
    for request, result in zip(requests, results):
        assert result.vectors.tobytes() == expected_vectors(request)
    assert sum(r.new_connection for r in results) == 1
    assert [r.connect_ns is not None for r in results] == [r.new_connection for r in results]
    assert not after.new_connection


async def test_no_reuse_opens_a_connection_per_call_and_closes_them(target):
    before = open_sockets()
    async with RestH3Client(target, reuse=False) as client:
        results = [await client.embed(EMBED) for _ in range(3)]
    assert all(r.new_connection and r.connect_ns > 0 for r in results)
    assert all(r.vectors.tobytes() == expected_vectors(EMBED) for r in results)
    assert open_sockets() - before == set()


async def test_error_status_raises_and_the_connection_stays_usable(target):
    async with RestH3Client(target) as client:
        with pytest.raises(ServerError) as err:
            await client.embed({**EMBED, "dimensions": 0})
        good = await client.embed(EMBED)
    assert err.value.status == 400 and "dimensions" in err.value.message
    assert not good.new_connection
    assert good.vectors.tobytes() == expected_vectors(EMBED)


# ------------------------------------------------------------------ sse-h3

@pytest.mark.parametrize("include_usage", [True, False])
async def test_generate_streams_every_token(target, include_usage):
    request = {**CHAT, "stream_options": {"include_usage": include_usage}}
    async with SseH3Client(target) as client:
        result = await client.generate(request)
    n = request["max_tokens"]
    assert [t.index for t in result.tokens] == list(range(n))
    assert [t.text for t in result.tokens] == tokens_for(parse_generate_request(request,
                                                                                chat=True))
    emits = [t.emit_ns for t in result.tokens]
    assert all(a < b for a, b in zip(emits, emits[1:]))
    # One host, one clock: every one-way delay is positive.
    assert all(t.recv_ns > t.emit_ns for t in result.tokens)
    assert result.server_time_us is not None and result.new_connection
    if include_usage:
        assert result.usage["completion_tokens"] == n
    else:
        assert result.usage is None


def test_runs_under_uvloop(target):
    uvloop = pytest.importorskip("uvloop")

    async def both() -> None:
        async with RestH3Client(target) as rest, SseH3Client(target) as sse:
            assert (await rest.embed(EMBED)).vectors.tobytes() == expected_vectors(EMBED)
            assert len((await sse.generate(CHAT)).tokens) == CHAT["max_tokens"]

    uvloop.run(both())


# ------------------------------------------------------------------ abandoned streams

async def _read_two_tokens(exchange) -> None:
    seen = 0
    async for chunk, _ in exchange.body_chunks():
        seen += chunk.count(b'"emit_ns"')
        if seen >= 2:
            return


async def _wait_cancelled(target: Target, cancelled_before: int) -> dict:
    deadline = time.monotonic() + 2.0
    while True:
        stats = await health_stats(target)
        if stats["active_streams"] == 0 and stats["cancelled_streams"] > cancelled_before:
            return stats
        assert time.monotonic() < deadline, f"server still streaming: {stats}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("leave_by", ["aclose", "close"])
async def test_abandoned_stream_is_cancelled_on_the_server(target, leave_by):
    cancelled_before = (await health_stats(target))["cancelled_streams"]
    client = SseH3Client(target)
    try:
        exchange = await client.transport.request(
            b"POST", b"/v1/chat/completions", [(b"content-type", b"application/json")],
            orjson.dumps(LONG_CHAT))
        await _read_two_tokens(exchange)
        if leave_by == "aclose":
            await exchange.aclose()
            # Only the stream was reset: the shared connection carries the next request.
            after = await client.generate(CHAT)
            assert len(after.tokens) == CHAT["max_tokens"] and not after.new_connection
        else:
            # A reader still waiting on the stream learns that the client closed it.
            reader = asyncio.ensure_future(exchange.read_body())
            await asyncio.sleep(0)
            await client.close()
            with pytest.raises(ConnectionLost):
                await reader
    finally:
        await client.close()
    stats = await _wait_cancelled(target, cancelled_before)
    assert stats["cancelled_streams"] == cancelled_before + 1


async def test_cancelled_generate_cancels_the_stream(target):
    cancelled_before = (await health_stats(target))["cancelled_streams"]
    async with SseH3Client(target) as client:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.generate(LONG_CHAT), 0.3)
    await _wait_cancelled(target, cancelled_before)


# ------------------------------------------------------------------ connect failures

def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_nothing_listening_raises_connect_error(target):
    dead = Target(port=_free_udp_port(), ca=target.ca)
    t0 = time.monotonic()
    async with RestH3Client(dead) as client:
        with pytest.raises(ConnectError, match=f"127.0.0.1:{dead.port}"):
            await client.embed(EMBED)
    assert time.monotonic() - t0 < 5.0


async def test_silent_peer_times_out(target):
    before = open_sockets()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))   # takes datagrams, never answers: no ICMP either
        port = silent.getsockname()[1]
        transport = Http3Transport(Target(port=port, ca=target.ca), reuse=True,
                                   handshake_timeout_s=0.3)
        t0 = time.monotonic()
        with pytest.raises(ConnectError, match=rf"127.0.0.1:{port} timed out after 0.3 s"):
            await transport.request(b"GET", b"/health", [], b"")
        assert time.monotonic() - t0 < 1.0
        await transport.close()
    assert open_sockets() - before == set()


async def test_certificate_for_another_name_is_refused(target):
    wrong = Target(port=target.port, ca=target.ca, server_name="not-this-server.example")
    async with RestH3Client(wrong) as client:
        with pytest.raises(ConnectError, match="handshake .* failed: hostname .* doesn't match"):
            await client.embed(EMBED)
