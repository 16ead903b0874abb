"""The `grpc` and `grpc-stream` cells against a real server process on real sockets."""

from __future__ import annotations

import asyncio
import importlib
import socket

import grpc
import grpc.aio
import numpy as np
import pytest

from clients.base import ConnectError, ServerError, Target
from clients.grpc.common import EMBED, GENERATE, generate_request, open_channel, server_stats
from clients.grpc.stream import GrpcStreamClient
from clients.grpc.unary import GrpcUnaryClient
from base.protocols import PROTOCOLS
from protos import inference_pb2 as pb
from servers import core
from servers.launcher import start_server

MAX_BATCH = 4
MAX_BODY = 64 * 1024
BIG_BODY = 8 * 1024 * 1024      # above gRPC's 4 MB default, both directions
API_KEY = "s3cret"
EMBED_REQ = {"input": ["hello there", "general kenobi"], "dimensions": 16,
             "wirebench": {"seed": 3}}
CHAT = {"messages": [{"role": "user", "content": "hello there"}], "stream": True}


@pytest.fixture(scope="module")
def target():
    with start_server("grpc", extra=["--max-batch", str(MAX_BATCH),
                                     "--max-body-bytes", str(MAX_BODY)]) as srv:
        yield Target(port=srv.port)


@pytest.fixture(scope="module")
def keyed_port():
    with start_server("grpc", api_key=API_KEY, extra=["--max-body-bytes", str(BIG_BODY)]) as srv:
        yield srv.port


def expected_vectors(request: dict) -> np.ndarray:
    return core.embed_batch(core.parse_embed_request(request))


async def assert_serves(target: Target) -> None:
    async with GrpcUnaryClient(target) as client:
        result = await client.embed(EMBED_REQ)
    assert result.vectors.tobytes() == expected_vectors(EMBED_REQ).tobytes()


async def embed_error(target: Target, request: dict) -> ServerError:
    async with GrpcUnaryClient(target) as client:
        with pytest.raises(ServerError) as info:
            await client.embed(request)
    return info.value


def test_protocol_ids_resolve_to_these_clients() -> None:
    for pid, cls in (("grpc", GrpcUnaryClient), ("grpc-stream", GrpcStreamClient)):
        module = importlib.import_module("clients." + PROTOCOLS[pid].client_module)
        assert module.CLIENT is cls and cls.protocol == pid


# ---------------------------------------------------------------- embed

async def test_embed_is_byte_identical_to_core(target: Target) -> None:
    async with GrpcUnaryClient(target) as client:
        first = await client.embed(EMBED_REQ)
        second = await client.embed(EMBED_REQ)
    vectors = expected_vectors(EMBED_REQ)
    assert first.vectors.dtype == np.dtype("<f4")
    assert first.vectors.tobytes() == vectors.tobytes()
    public = pb.EmbedResponse(data=[pb.Embedding(values=v.tolist()) for v in vectors],
                              model=core.EMBED_MODEL_ID,
                              usage=pb.Usage(prompt_tokens=4, total_tokens=4))
    assert first.payload_down == public.ByteSize()
    assert first.payload_up > 0 and first.server_time_us > 0
    assert first.t_start_ns < first.t_first_byte_ns <= first.t_received_ns <= first.t_decoded_ns
    assert (first.new_connection, second.new_connection) == (True, False)
    assert first.connect_ns > 0 and second.connect_ns is None


@pytest.mark.parametrize("dims", [1, 8192])
async def test_embed_shape_at_dimension_limits(target: Target, dims: int) -> None:
    request = {**EMBED_REQ, "dimensions": dims}
    async with GrpcUnaryClient(target) as client:
        result = await client.embed(request)
    assert result.vectors.shape == (2, dims)
    assert result.vectors.tobytes() == expected_vectors(request).tobytes()


async def test_messages_over_4mb_pass_when_configured(keyed_port: int) -> None:
    request = {"input": ["z" * 30_000] * 160, "dimensions": 8192}   # 4.8 MB up, 5.2 MB down
    async with GrpcUnaryClient(Target(port=keyed_port, api_key=API_KEY)) as client:
        result = await client.embed(request)
    assert result.payload_up > 4 * 2**20 and result.payload_down > 4 * 2**20
    assert result.vectors.shape == (160, 8192)


async def test_no_reuse_opens_a_connection_per_call(target: Target) -> None:
    async with GrpcUnaryClient(target, reuse=False) as client:
        results = [await client.embed(EMBED_REQ) for _ in range(2)]
    assert all(r.new_connection and r.connect_ns > 0 for r in results)


async def test_unreachable_server_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]       # bound, never listening: connection refused
        async with GrpcUnaryClient(Target(port=port)) as client:
            with pytest.raises(ConnectError):
                await asyncio.wait_for(client.embed(EMBED_REQ), 5)


# ---------------------------------------------------------------- generate

async def test_generate_tokens_on_schedule(target: Target) -> None:
    itl_ms, ttft_ms, n = 10.0, 20.0, 8
    request = {**CHAT, "max_tokens": n, "stream_options": {"include_usage": True},
               "wirebench": {"ttft_ms": ttft_ms, "itl_ms": itl_ms, "seed": 5}}
    async with GrpcStreamClient(target) as client:
        result = await client.generate(request)
    params = core.parse_generate_request(request, chat=True)
    assert [t.index for t in result.tokens] == list(range(n))
    assert [t.text for t in result.tokens] == core.tokens_for(params)
    emits = np.array([t.emit_ns for t in result.tokens])
    assert np.all(np.diff(emits) > 0)
    # On the absolute schedule t0 + ttft + k*itl, typically on time. Its origin is taken
    # from the token that kept it best (tokens are never early: tests/integration/
    # test_schedule.py bounds that against the kernel's own wake-up noise), so a token
    # held back by a scheduler hiccup on this shared 2-core machine, the first included,
    # does not shift the others. A schedule that drifts (sleep(itl) in a loop) grows
    # later with every token and fails the median.
    slot_ms = emits / 1e6 - np.arange(n) * itl_ms
    lateness_ms = slot_ms - slot_ms.min()
    # Never early: the server's t0 comes after the client's start (one clock on one host).
    assert slot_ms.min() >= (result.t_start_ns / 1e6 + ttft_ms), slot_ms
    assert np.median(lateness_ms) < 1.5, lateness_ms
    assert lateness_ms.max() < 15.0, lateness_ms
    assert all(t.recv_ns >= t.emit_ns for t in result.tokens)   # one clock on one host
    assert result.ttft_ns >= ttft_ms * 1e6
    assert result.server_time_us >= (ttft_ms + (n - 1) * itl_ms) * 1e3
    assert result.usage == {"prompt_tokens": params.prompt_tokens, "completion_tokens": n,
                            "total_tokens": params.prompt_tokens + n}
    assert result.payload_down > 0 and result.payload_up == len(generate_request(request))
    assert result.new_connection and result.connect_ns > 0


async def test_completion_prompt_uses_completion_tokens(target: Target) -> None:
    request = {"prompt": "once upon a time", "max_tokens": 4}
    async with GrpcStreamClient(target) as client:
        result = await client.generate(request)
    params = core.parse_generate_request(request, chat=False)
    assert [t.text for t in result.tokens] == core.tokens_for(params)
    assert result.usage is None     # not asked for


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("method", [EMBED, GENERATE])
async def test_malformed_protobuf_is_refused_and_server_survives(target: Target,
                                                                 method: str) -> None:
    before = await server_stats(target)
    async with open_channel(target) as channel:
        # Identity serializers send raw bytes; the server refuses before any message,
        # so a unary call reads Generate's error as well as Embed's.
        call = channel.unary_unary(method)(b"\x0a\x05ab")   # length runs past the end
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed protobuf" in info.value.details()
    assert (await server_stats(target))["errors"] == before["errors"] + 1
    await assert_serves(target)


@pytest.mark.parametrize("dims", [0, 9000])
async def test_dimensions_out_of_range(target: Target, dims: int) -> None:
    error = await embed_error(target, {**EMBED_REQ, "dimensions": dims})
    assert error.status == "INVALID_ARGUMENT" and "dimensions" in error.message
    await assert_serves(target)


async def test_an_unknown_model_is_not_found(target: Target) -> None:
    error = await embed_error(target, {**EMBED_REQ, "model": "gpt-x"})
    assert error.status == "NOT_FOUND" and "'gpt-x' does not exist" in error.message
    await assert_serves(target)


async def test_batch_over_max_batch(target: Target) -> None:
    error = await embed_error(target, {"input": ["x"] * (MAX_BATCH + 1)})
    assert error.status == "RESOURCE_EXHAUSTED" and "batch" in error.message
    await assert_serves(target)


async def test_message_over_max_body_bytes(target: Target) -> None:
    # Few inputs, each under the per-input limit: only the message size is too big.
    error = await embed_error(target, {"input": ["y" * 30_000] * 3})
    assert error.status == "RESOURCE_EXHAUSTED" and "larger than max" in error.message
    await assert_serves(target)


async def test_bad_generate_request(target: Target) -> None:
    async with GrpcStreamClient(target) as client:
        with pytest.raises(ServerError) as info:
            await client.generate({**CHAT, "max_tokens": 0})
    assert info.value.status == "INVALID_ARGUMENT" and "max_tokens" in info.value.message
    await assert_serves(target)


async def test_api_key(keyed_port: int) -> None:
    for key in (None, "wrong"):
        error = await embed_error(Target(port=keyed_port, api_key=key), EMBED_REQ)
        assert error.status == "UNAUTHENTICATED" and "authorization" in error.message
        async with GrpcStreamClient(Target(port=keyed_port, api_key=key)) as client:
            with pytest.raises(ServerError, match="UNAUTHENTICATED"):
                await client.generate(CHAT)
    await assert_serves(Target(port=keyed_port, api_key=API_KEY))
    async with GrpcStreamClient(Target(port=keyed_port, api_key=API_KEY)) as client:
        assert len((await client.generate({**CHAT, "max_tokens": 3})).tokens) == 3


# ---------------------------------------------------------------- cancellation

LONG_STREAM = {**CHAT, "max_tokens": 1000, "wirebench": {"itl_ms": 20}}


async def wait_stream_cancelled(target: Target, before: dict) -> dict:
    """Stats once the cancelled stream is accounted for (within 2 s)."""
    for _ in range(40):
        stats = await server_stats(target)
        if stats["cancelled_streams"] > before["cancelled_streams"]:
            return stats
        await asyncio.sleep(0.05)
    raise AssertionError(f"stream not cancelled on the server: {stats}")


async def assert_generation_stopped(target: Target, stats: dict) -> None:
    assert stats["active_streams"] == 0
    await asyncio.sleep(0.1)    # 5 token intervals: none may be generated
    assert (await server_stats(target))["tokens_sent"] == stats["tokens_sent"]


async def test_cancel_after_two_tokens_stops_generation(target: Target) -> None:
    before = await server_stats(target)
    async with open_channel(target) as channel:
        call = channel.unary_stream(GENERATE)(generate_request(LONG_STREAM))
        for _ in range(2):
            await call.read()
        call.cancel()
        stats = await wait_stream_cancelled(target, before)
    assert stats["cancelled_streams"] == before["cancelled_streams"] + 1
    await assert_generation_stopped(target, stats)


async def test_cancelled_generate_task_cancels_the_stream(target: Target) -> None:
    before = await server_stats(target)
    async with GrpcStreamClient(target) as client:
        task = asyncio.create_task(client.generate(LONG_STREAM))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = await wait_stream_cancelled(target, before)
    await assert_generation_stopped(target, stats)
