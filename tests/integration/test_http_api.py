"""The OpenAI-compatible HTTP API over HTTP/1.1, HTTP/2 (TLS) and h2c, real servers."""

from __future__ import annotations

import asyncio
import ssl

import orjson
import pytest

from clients import open_client
from clients.base import FallbackError, ServerError, Target
from clients.transport.http1 import Http1Transport
from clients.transport.http2 import Http2Transport
from servers import core


EMBED = {"input": [f"text {i}" for i in range(8)], "dimensions": 1536, "model": "wirebench-embed-1"}
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 12, "stream": True,
        "stream_options": {"include_usage": True}, "wirebench": {"itl_ms": 1}}

# (protocol suffix, server kind, server flags, Target overrides)
CELLS = {
    "h1": ("h1", "h1", [], {}),
    "h2": ("h2", "h2", ["--h2c-port", "0"], {}),
    "h2c": ("h2", "h2", ["--h2c-port", "0"], {"tls": False}),
}
TRANSPORTS = {"h1": Http1Transport, "h2": Http2Transport, "h2c": Http2Transport}


def cell_target(servers, tls_files, cell, flags=None):
    suffix, kind, default_flags, overrides = CELLS[cell]
    srv = servers.start(kind, extra=flags if flags is not None else default_flags)
    port = srv.info["h2c_port"] if cell == "h2c" else srv.port
    return Target(port=port, ca=tls_files.ca, **overrides), srv


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embeddings_are_the_cores_vectors(servers, tls_files, cell, encoding):
    target, _ = cell_target(servers, tls_files, cell)
    request = {**EMBED, "encoding_format": encoding}
    expected = core.embed_batch(core.parse_embed_request(request))
    async with open_client(f"rest-{CELLS[cell][0]}", target) as client:
        result = await client.embed(request)
    assert result.vectors.tobytes() == expected.tobytes()
    assert result.server_time_us is not None and result.server_time_us > 0
    assert result.t_start_ns < result.t_first_byte_ns <= result.t_received_ns <= result.t_decoded_ns
    assert result.payload_up == len(orjson.dumps(request))


@pytest.mark.parametrize("cell", CELLS)
async def test_sse_stream_tokens_and_stamps(servers, tls_files, cell):
    target, _ = cell_target(servers, tls_files, cell)
    params = core.parse_generate_request(CHAT, chat=True)
    async with open_client(f"sse-{CELLS[cell][0]}", target) as client:
        result = await client.generate(CHAT)
    assert [t.index for t in result.tokens] == list(range(12))
    assert [t.text for t in result.tokens] == core.tokens_for(params)
    emits = [t.emit_ns for t in result.tokens]
    assert emits == sorted(emits)
    assert all(t.recv_ns > t.emit_ns for t in result.tokens)   # one clock, causality holds
    assert result.usage == {"prompt_tokens": 2, "completion_tokens": 12, "total_tokens": 14}
    assert result.server_time_us >= 11 * 1000                    # 11 gaps of 1 ms


@pytest.mark.parametrize("cell", CELLS)
async def test_reuse_policy_is_explicit(servers, tls_files, cell):
    target, _ = cell_target(servers, tls_files, cell)
    proto = f"rest-{CELLS[cell][0]}"
    small = {"input": "x", "dimensions": 8}
    async with open_client(proto, target, reuse=True) as client:
        flags = [(await client.embed(small)).new_connection for _ in range(4)]
    assert flags == [True, False, False, False]
    async with open_client(proto, target, reuse=False) as client:
        flags = [(await client.embed(small)).new_connection for _ in range(3)]
    assert flags == [True, True, True]


async def raw(transport, method, path, body=b"", headers=()):
    exchange = await transport.request(method, path, [(b"content-type", b"application/json"),
                                                      *headers], body)
    data, _ = await exchange.read_body()
    await exchange.aclose()
    return exchange.response, data


async def test_models_and_health(servers, tls_files):
    target, _ = cell_target(servers, tls_files, "h1")
    transport = Http1Transport(target, reuse=True)
    resp, body = await raw(transport, b"GET", b"/v1/models")
    models = orjson.loads(body)["data"]
    assert resp.status == 200 and all(m["root"] == m["id"] for m in models)
    resp, body = await raw(transport, b"GET", b"/health")
    assert orjson.loads(body)["status"] == "ok"
    await transport.close()


async def test_completions_endpoint_streams_text(servers, tls_files):
    target, _ = cell_target(servers, tls_files, "h1")
    transport = Http1Transport(target, reuse=True)
    body = orjson.dumps({"prompt": "once upon", "max_tokens": 3, "stream": True})
    resp, data = await raw(transport, b"POST", b"/v1/completions", body)
    events = [line[6:] for line in data.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}      # one id per stream
    assert "".join(c["choices"][0]["text"] for c in chunks) == "".join(
        core.tokens_for(core.parse_generate_request({"prompt": "once upon", "max_tokens": 3},
                                                    chat=False)))
    await transport.close()


BAD = [
    # (body, path, method, status, words the message must contain)
    (b"{not json", b"/v1/embeddings", b"POST", 400, ["not valid JSON"]),
    (b'{"input": 12}', b"/v1/embeddings", b"POST", 400, ["input"]),
    (b'{"input": "a", "dimensions": 0}', b"/v1/embeddings", b"POST", 400, ["dimensions"]),
    (b'{"input": "a", "dimensions": 100000}', b"/v1/embeddings", b"POST", 400, ["dimensions"]),
    (orjson.dumps({"input": ["a"] * 5}), b"/v1/embeddings", b"POST", 413, ["batch", "4"]),
    (orjson.dumps({"input": "a" * 5000}), b"/v1/embeddings", b"POST", 413, ["4096"]),
    (b'{"messages": "hi"}', b"/v1/chat/completions", b"POST", 400, ["messages"]),
    (b"", b"/v1/nothing", b"POST", 404, ["/v1/nothing"]),
    (b"", b"/v1/embeddings", b"GET", 405, ["GET", "POST"]),
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("body, path, method, status, words", BAD,
                         ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)])
async def test_bad_input_is_answered_and_the_server_keeps_serving(
        servers, tls_files, cell, body, path, method, status, words):
    flags = ["--max-batch", "4", "--max-body-bytes", "4096"]
    if cell != "h1":
        flags += ["--h2c-port", "0"]
    target, _ = cell_target(servers, tls_files, cell, flags)
    transport = TRANSPORTS[cell](target, reuse=True)
    try:
        resp, data = await raw(transport, method, path, body)
        assert resp.status == status, data
        message = orjson.loads(data)["error"]["message"]
        for word in words:
            assert word in message, message
        # ... and a good request on the same client and server still works.
        resp, data = await raw(transport, b"POST", b"/v1/embeddings",
                               b'{"input": "ok", "dimensions": 4}')
        assert resp.status == 200 and len(orjson.loads(data)["data"][0]["embedding"]) == 4
        # ...on the same connection: a refusal must not cost the client its connection
        # (hypercorn's HTTP/2 drops it when a refused body is left unread).
        assert not resp.new_connection
    finally:
        await transport.close()


@pytest.mark.parametrize("cell", ["h1", "h2"])
async def test_api_key(servers, tls_files, cell):
    flags = ["--api-key", "sekret"] + (["--h2c-port", "0"] if cell != "h1" else [])
    target, _ = cell_target(servers, tls_files, cell, flags)
    proto = f"rest-{CELLS[cell][0]}"
    for key, words in ((None, "Missing"), ("wrong", "Incorrect")):
        async with open_client(proto, Target(port=target.port, ca=target.ca, api_key=key)) as c:
            with pytest.raises(ServerError) as err:
                await c.embed({"input": "a"})
            assert err.value.status == 401 and words in err.value.message
    async with open_client(proto, Target(port=target.port, ca=target.ca, api_key="sekret")) as c:
        assert (await c.embed({"input": "a", "dimensions": 3})).vectors.shape == (1, 3)


async def wait_for_stats(transport, predicate, timeout_s=3.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        _, body = await raw(transport, b"GET", b"/health")
        stats = orjson.loads(body)["stats"]
        if predicate(stats) or asyncio.get_running_loop().time() > deadline:
            return stats
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("cell", CELLS)
async def test_client_leaving_mid_stream_stops_generation(servers, tls_files, cell):
    target, _ = cell_target(servers, tls_files, cell, ["--h2c-port", "0"] if cell != "h1" else [])
    transport = TRANSPORTS[cell](target, reuse=False)
    before = await wait_for_stats(transport, lambda s: True)
    body = orjson.dumps({**CHAT, "max_tokens": 1000, "wirebench": {"itl_ms": 20}})
    exchange = await transport.request(b"POST", b"/v1/chat/completions", [], body)
    seen = 0
    async for chunk, _ in exchange.body_chunks():
        seen += chunk.count(b"data: ")
        if seen >= 2:
            break
    await exchange.aclose()                   # h1: closes the socket; h2: RST_STREAM
    stats = await wait_for_stats(transport, lambda s: s["active_streams"] == 0 and
                                 s["cancelled_streams"] > before["cancelled_streams"])
    assert stats["active_streams"] == 0
    assert stats["cancelled_streams"] == before["cancelled_streams"] + 1
    assert stats["tokens_sent"] - before["tokens_sent"] < 20   # far from 1000
    await transport.close()


async def test_h2_client_refuses_http1_fallback_over_tls(tls_files):
    # A real TLS server that only speaks http/1.1: the h2 client must not carry on.
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_files.cert, tls_files.key)
    ctx.set_alpn_protocols(["http/1.1"])
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        async with open_client("rest-h2", Target(port=port, ca=tls_files.ca)) as client:
            with pytest.raises(FallbackError, match="h2"):
                await client.embed({"input": "a"})
    finally:
        server.close()
        await server.wait_closed()


async def test_h2c_client_refuses_an_http1_server(servers, tls_files):
    target, _ = cell_target(servers, tls_files, "h1")
    async with open_client("rest-h2", Target(port=target.port, tls=False)) as client:
        with pytest.raises(FallbackError):
            await client.embed({"input": "a"})
