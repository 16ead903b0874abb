"""The `ws` and `ws-stream` cells against a real server process on real sockets."""

from __future__ import annotations

import asyncio
import http

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosedError

from clients.base import ConnectionLost, FallbackError, ServerError, Target
from clients.openai_codec import embedding_vectors
from clients.ws.unary import WsClient
from clients.ws.common import WsConnection
from clients.ws.stream import WsStreamClient
from servers import core
from servers.launcher import start_server
from servers.openai_format import embedding_response

MAX_BATCH = 4
MAX_BODY = 64 * 1024
API_KEY = "s3cret"
CHAT = {"messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def port():
    with start_server("ws", extra=["--max-batch", str(MAX_BATCH),
                                   "--max-body-bytes", str(MAX_BODY)]) as srv:
        yield srv.port


@pytest.fixture(scope="module")
def keyed_port():
    with start_server("ws", api_key=API_KEY) as srv:
        yield srv.port


async def raw_connect(port: int):
    return await connect(f"ws://127.0.0.1:{port}/", compression=None, proxy=None)


async def ask(ws, message) -> dict:
    await ws.send(message if isinstance(message, bytes) else orjson.dumps(message), text=True)
    return orjson.loads(await ws.recv())


async def assert_usable(ws) -> None:
    reply = await ask(ws, {"id": "ok", "type": "embed", "body": {"input": "x", "dimensions": 4}})
    assert (reply["id"], reply["type"]) == ("ok", "embedding")


async def server_stats(port: int) -> dict:
    async with WsClient(Target(port=port)) as client:
        return await client.server_stats()


# ---------------------------------------------------------------- embeddings

@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embed_vectors_exact(port, encoding):
    request = {"input": ["alpha", "beta gamma", "delta"], "dimensions": 256,
               "encoding_format": encoding, "wirebench": {"seed": 7}}
    expected = core.embed_batch(core.parse_embed_request(request))
    async with WsClient(Target(port=port)) as client:
        first = await client.embed(request)
        second = await client.embed(request)
    for result in (first, second):
        assert result.vectors.dtype == "<f4"
        assert result.vectors.tobytes() == expected.tobytes()
        assert result.t_start_ns <= result.t_first_byte_ns <= result.t_received_ns \
            <= result.t_decoded_ns
        assert result.payload_up > len(orjson.dumps(request))
        assert result.payload_down > 0 and result.server_time_us > 0
    assert first.new_connection and first.connect_ns > 0
    assert not second.new_connection and second.connect_ns is None


async def test_embed_body_is_the_http_body(port):
    request = {"input": ["one", "two"], "dimensions": 64}
    params = core.parse_embed_request(request)
    ws = await raw_connect(port)
    try:
        await ws.send(orjson.dumps({"id": 1, "type": "embed", "body": request}), text=True)
        frame = await ws.recv(decode=False)
    finally:
        await ws.close()
    assert frame.startswith(b'{"id":1,"type":"embedding","server_time_us":')
    body = frame[frame.index(b',"body":') + 8:-1]
    assert body == embedding_response(params, core.embed_batch(params))


async def test_new_connection_per_call_without_reuse(port):
    async with WsClient(Target(port=port), reuse=False) as client:
        results = [await client.embed({"input": "x", "dimensions": 8}) for _ in range(2)]
    assert all(r.new_connection and r.connect_ns > 0 for r in results)


# ---------------------------------------------------------------- streams

async def test_stream_tokens_in_order_with_emit_stamps(port):
    request = {**CHAT, "max_tokens": 20, "wirebench": {"itl_ms": 1, "seed": 3}}
    async with WsStreamClient(Target(port=port)) as client:
        result = await client.generate(request)
    params = core.parse_generate_request(request, chat=True)
    assert [t.index for t in result.tokens] == list(range(20))
    assert [t.text for t in result.tokens] == core.tokens_for(params)
    emits = [t.emit_ns for t in result.tokens]
    assert all(a < b for a, b in zip(emits, emits[1:]))
    assert all(t.recv_ns >= t.emit_ns for t in result.tokens)  # one clock, one host
    assert result.usage == {"prompt_tokens": params.prompt_tokens, "completion_tokens": 20,
                            "total_tokens": params.prompt_tokens + 20}
    assert result.server_time_us >= 19_000
    assert result.t_first_byte_ns == result.tokens[0].recv_ns <= result.t_end_ns
    assert result.new_connection and result.payload_down > 20 * 40


async def test_concurrent_embed_and_generate_share_one_connection(port):
    conn = await WsConnection.open(Target(port=port))
    try:
        async def generate():
            async with conn.exchange(b"generate", {**CHAT, "max_tokens": 10,
                                                   "wirebench": {"itl_ms": 2}}) as ex:
                frames = [await ex.receive()]
                while frames[-1][1]["type"] == "token":
                    frames.append(await ex.receive())
                return frames

        async def embed():
            async with conn.exchange(b"embed", {"input": ["a", "b"], "dimensions": 32}) as ex:
                return await ex.receive()

        frames, (embed_ns, embedding) = await asyncio.gather(generate(), embed())
    finally:
        await conn.close()
    assert [m["index"] for _, m in frames[:-1]] == list(range(10))
    assert frames[-1][1]["type"] == "done"
    assert embed_ns < frames[-1][0]   # the answer interleaved with the running stream
    vectors = core.embed_batch(core.parse_embed_request({"input": ["a", "b"],
                                                         "dimensions": 32}))
    assert embedding_vectors(embedding["body"]).tobytes() == vectors.tobytes()


async def test_concurrent_first_calls_open_one_connection(port):
    async with WsClient(Target(port=port)) as client:
        results = await asyncio.gather(*(client.embed({"input": f"t{i}", "dimensions": 8})
                                         for i in range(8)))
    assert sum(r.new_connection for r in results) == 1


# ---------------------------------------------------------------- bad input

GOOD_BODY = {"input": "x", "dimensions": 4}


@pytest.mark.parametrize("message, rid, status, words", [
    (b"{not json", None, 400, "not valid JSON"),
    (b"[1, 2]", None, 400, "must be a JSON object, got list"),
    ({"id": "a", "type": "frobnicate"}, "a", 400, "'type' must be one of"),
    ({"type": "embed", "body": GOOD_BODY}, None, 400, "'id' is required"),
    ({"id": "b", "type": "embed", "body": {"dimensions": 4}}, "b", 400, "'input' is required"),
    ({"id": "c", "type": "embed", "body": {**GOOD_BODY, "dimensions": 0}}, "c", 400,
     "'dimensions' must be between"),
    ({"id": "d", "type": "embed", "body": {"input": ["x"] * (MAX_BATCH + 1)}}, "d", 413,
     f"exceeds the limit of {MAX_BATCH}"),
    ({"id": "e", "type": "generate", "body": {"messages": []}}, "e", 400, "'messages'"),
    ({"id": "f", "type": "embed", "body": {**GOOD_BODY, "model": "gpt-x"}}, "f", 404,
     "'gpt-x' does not exist"),
])
async def test_bad_message_is_answered_and_connection_stays_usable(port, message, rid, status,
                                                                   words):
    ws = await raw_connect(port)
    try:
        reply = await ask(ws, message)
        assert (reply["id"], reply["type"], reply["status"]) == (rid, "error", status)
        assert words in reply["error"]["message"]
        assert set(reply["error"]) == {"message", "type", "param", "code"}
        await assert_usable(ws)
    finally:
        await ws.close()


async def test_client_raises_server_error_and_keeps_connection(port):
    async with WsClient(Target(port=port)) as client:
        before = await client.server_stats()
        with pytest.raises(ServerError) as info:
            await client.embed({"input": ["x"] * (MAX_BATCH + 1)})
        assert info.value.status == 413 and "exceeds the limit" in info.value.message
        assert not (await client.embed(GOOD_BODY)).new_connection
        after = await client.server_stats()
    assert after["requests"] - before["requests"] == 2   # stats requests are not counted
    assert after["errors"] - before["errors"] == 1


async def test_oversized_frame_closes_1009_then_new_connection_works(port):
    big = {"input": ["y" * 20_000] * MAX_BATCH}   # > MAX_BODY as one frame
    ws = await raw_connect(port)
    await ws.send(orjson.dumps({"id": 1, "type": "embed", "body": big}), text=True)
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.rcvd.code == 1009
    async with WsClient(Target(port=port)) as client:
        with pytest.raises(ConnectionLost, match="1009"):
            await client.embed(big)
        assert (await client.embed(GOOD_BODY)).new_connection   # reconnected by itself


async def test_api_key_checked_at_handshake(keyed_port):
    with pytest.raises(ServerError) as info:
        await WsClient(Target(port=keyed_port)).embed(GOOD_BODY)
    assert info.value.status == 401 and "API key" in info.value.message
    with pytest.raises(ServerError):
        await WsClient(Target(port=keyed_port, api_key="wrong")).embed(GOOD_BODY)
    async with WsClient(Target(port=keyed_port, api_key=API_KEY)) as client:
        assert (await client.embed(GOOD_BODY)).vectors.shape == (1, 4)


# ---------------------------------------------------------------- lifecycle

async def wait_for_stats(port: int, cancelled: int) -> dict:
    for _ in range(40):
        stats = await server_stats(port)
        if stats["active_streams"] == 0 and stats["cancelled_streams"] == cancelled:
            return stats
        await asyncio.sleep(0.05)
    return stats


async def test_disconnect_mid_stream_cancels_generation(port):
    before = await server_stats(port)
    conn = await WsConnection.open(Target(port=port))
    async with conn.exchange(b"generate", {**CHAT, "max_tokens": 1000,
                                           "wirebench": {"itl_ms": 5}}) as ex:
        for _ in range(2):
            assert (await ex.receive())[1]["type"] == "token"
        await conn.close()
    stats = await wait_for_stats(port, before["cancelled_streams"] + 1)
    assert stats["active_streams"] == 0
    assert stats["cancelled_streams"] == before["cancelled_streams"] + 1


async def test_abandoned_stream_is_cancelled_and_connection_reused(port):
    before = await server_stats(port)
    async with WsStreamClient(Target(port=port)) as client:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.generate({**CHAT, "max_tokens": 1000,
                                                    "wirebench": {"itl_ms": 5}}), 0.05)
        stats = await wait_for_stats(port, before["cancelled_streams"] + 1)
        assert stats["cancelled_streams"] == before["cancelled_streams"] + 1
        result = await client.generate({**CHAT, "max_tokens": 3})
        assert len(result.tokens) == 3 and not result.new_connection


# ---------------------------------------------------------------- negotiated protocol

async def fake_server(**hooks):
    async def handler(ws):
        await ws.wait_closed()
    return await serve(handler, "127.0.0.1", 0, compression=None, **hooks)


async def test_extension_negotiated_anyway_is_a_fallback():
    def add_deflate(conn, request, response):
        response.headers["Sec-WebSocket-Extensions"] = "permessage-deflate"

    async with await fake_server(process_response=add_deflate) as server:
        with pytest.raises(FallbackError, match="negotiated"):
            await WsClient(Target(port=server.sockets[0].getsockname()[1])).embed(GOOD_BODY)


async def test_plain_http_answer_is_a_fallback():
    async with await fake_server(
            process_request=lambda conn, req: conn.respond(http.HTTPStatus.OK, "hi\n")) as server:
        with pytest.raises(FallbackError, match="HTTP 200"):
            await WsClient(Target(port=server.sockets[0].getsockname()[1])).embed(GOOD_BODY)
