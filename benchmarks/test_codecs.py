"""Micro-benchmarks: what encoding and decoding cost, apart from any protocol.

    python -m pytest benchmarks -q --benchmark-only     # measure (see conftest.py)
    python -m pytest benchmarks -q                      # each once, as a correctness check

Every benchmark calls the project's own functions (the ones the servers and clients
run), never a re-implementation, and asserts that what it decodes equals the input.

Embedding: one 1536-dim float32 vector, as
- OpenAI JSON floats: servers.openai_format.embedding_response -> orjson.loads +
  clients.openai_codec.embedding_vectors (what rest-*/ws clients do);
- OpenAI JSON base64: the same functions with encoding_format "base64";
- protobuf: servers.grpc_server.embed_response (the EmbedResponseRaw twin) ->
  clients.grpc.unary.decode_vectors.

Streamed token: one chat token, as
- an SSE event: StreamFormatter.token + the `data: ...\\n\\n` framing of
  servers/http/asgi_app.py -> clients.sse.SSEDecoder + orjson.loads + ChunkReader.add (as
  clients.http_api.SseClient reads a stream);
- a WebSocket message: the JSON frame servers/ws_server.py sends per token ->
  ws_common._frame_id (routing) + orjson.loads + the StreamToken ws_stream builds;
- a gRPC message: servers.grpc_server.token_message -> clients.grpc.stream.decode_tokens
  (Token.FromString).
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from clients.base import StreamToken
from clients.grpc.stream import decode_tokens
from clients.grpc.unary import decode_vectors
from clients.openai_codec import ChunkReader, embedding_vectors
from clients.sse import SSEDecoder
from clients.ws.common import _frame_id
from servers.core import EmbedParams, GenerateParams, TokenEvent, embed_batch
from servers.grpc_server import embed_response as grpc_embed_response
from servers.grpc_server import token_message
from servers.openai_format import StreamFormatter, dumps, embedding_response

DIMS = 1536


# ---------------------------------------------------------------- embedding

def _params(encoding: str) -> EmbedParams:
    return EmbedParams(inputs=("network latency token vector stream",), dimensions=DIMS,
                       encoding_format=encoding)


VECTORS = embed_batch(_params("float"))          # (1, 1536) <f4, as the server makes it
assert VECTORS.shape == (1, DIMS) and VECTORS.dtype == np.dtype("<f4")


def _json_encode(params: EmbedParams):
    return lambda: embedding_response(params, VECTORS)


def _json_decode(raw: bytes) -> np.ndarray:
    return embedding_vectors(orjson.loads(raw))


EMBEDDING_CODECS = {
    # name: (encode() -> bytes, decode(bytes) -> ndarray)
    "json-float": (_json_encode(_params("float")), _json_decode),
    "json-base64": (_json_encode(_params("base64")), _json_decode),
    "protobuf": (lambda: grpc_embed_response(_params("float"), VECTORS), decode_vectors),
}


def _same_vectors(decoded: np.ndarray) -> None:
    assert decoded.dtype == np.dtype("<f4")
    assert np.array_equal(decoded, VECTORS), "decoded embedding differs from the input"


@pytest.mark.benchmark(group="embedding-1536: encode")
@pytest.mark.parametrize("codec", list(EMBEDDING_CODECS))
def test_embedding_encode(benchmark, codec):
    encode, decode = EMBEDDING_CODECS[codec]
    raw = benchmark(encode)
    benchmark.extra_info["bytes"] = len(raw)
    _same_vectors(decode(raw))


@pytest.mark.benchmark(group="embedding-1536: decode")
@pytest.mark.parametrize("codec", list(EMBEDDING_CODECS))
def test_embedding_decode(benchmark, codec):
    encode, decode = EMBEDDING_CODECS[codec]
    raw = encode()
    benchmark.extra_info["bytes"] = len(raw)
    _same_vectors(benchmark(decode, raw))


@pytest.mark.benchmark(group="embedding-1536: round trip")
@pytest.mark.parametrize("codec", list(EMBEDDING_CODECS))
def test_embedding_round_trip(benchmark, codec):
    encode, decode = EMBEDDING_CODECS[codec]
    _same_vectors(benchmark(lambda: decode(encode())))


# ---------------------------------------------------------------- streamed token

GEN = GenerateParams(prompt="how far is the network", max_tokens=64, include_usage=True)
EVENT = TokenEvent(index=5, text=" latency", emit_ns=1_234_567_890_123)
WS_ID = b"42"        # ws clients number their requests "1", "2", ... as JSON strings


_FORMATTER = StreamFormatter(GEN)     # one per stream, as App._stream makes it
_SSE_DECODER = SSEDecoder()           # one per stream, as SseClient._read_events makes it


def _sse_encode() -> bytes:
    # servers/http/asgi_app.py App._stream: one event per token.
    chunk = _FORMATTER.token(EVENT.index, EVENT.text, EVENT.emit_ns)
    return b"data: " + dumps(chunk) + b"\n\n"


def _sse_decode(raw: bytes) -> StreamToken:
    # clients/http_api.py SseClient._read_events, for one chunk holding one event.
    (event,) = _SSE_DECODER.feed(raw)
    reader = ChunkReader()
    reader.add(orjson.loads(event.data), 0)
    return reader.tokens[0]


def _ws_encode() -> bytes:
    # servers/ws_server.py _Session.generate, the frame sent per token (rid echoed as
    # the client sent it: a JSON string).
    return dumps({"id": WS_ID.decode(), "type": "token", "index": EVENT.index,
                  "emit_ns": EVENT.emit_ns, "text": EVENT.text})


def _ws_decode(raw: bytes) -> StreamToken:
    # clients/ws/common.py: the reader routes by id, Exchange.receive parses, and
    # clients/ws/stream.py builds the token.
    if _frame_id(raw) != WS_ID:
        raise AssertionError("frame not routed to its request")
    msg = orjson.loads(raw)
    if msg["type"] != "token":
        raise AssertionError(msg)
    return StreamToken(msg["index"], msg["text"], msg["emit_ns"], 0)


def _grpc_encode() -> bytes:
    return token_message(GEN, EVENT)


def _grpc_decode(raw: bytes) -> StreamToken:
    tokens, _usage = decode_tokens([(raw, 0)])
    return tokens[0]


TOKEN_CODECS = {
    "sse": (_sse_encode, _sse_decode),
    "websocket": (_ws_encode, _ws_decode),
    "grpc": (_grpc_encode, _grpc_decode),
}


def _same_token(token: StreamToken) -> None:
    assert (token.index, token.text, token.emit_ns) == (EVENT.index, EVENT.text, EVENT.emit_ns)


@pytest.mark.benchmark(group="stream token: encode")
@pytest.mark.parametrize("codec", list(TOKEN_CODECS))
def test_token_encode(benchmark, codec):
    encode, decode = TOKEN_CODECS[codec]
    raw = benchmark(encode)
    benchmark.extra_info["bytes"] = len(raw)
    _same_token(decode(raw))


@pytest.mark.benchmark(group="stream token: decode")
@pytest.mark.parametrize("codec", list(TOKEN_CODECS))
def test_token_decode(benchmark, codec):
    encode, decode = TOKEN_CODECS[codec]
    raw = encode()
    benchmark.extra_info["bytes"] = len(raw)
    _same_token(benchmark(decode, raw))


@pytest.mark.benchmark(group="stream token: round trip")
@pytest.mark.parametrize("codec", list(TOKEN_CODECS))
def test_token_round_trip(benchmark, codec):
    encode, decode = TOKEN_CODECS[codec]
    _same_token(benchmark(lambda: decode(encode())))
