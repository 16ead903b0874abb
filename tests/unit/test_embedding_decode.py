"""decode_embeddings: the simdjson fast path gives exactly the orjson path's answer, and
leaves everything unusual to it (which validates and words the errors)."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from clients import openai_codec
from clients.base import ProtocolViolation
from clients.openai_codec import (_simd_vectors, decode_embeddings, embedding_vectors,
                                  parse_server_timing)
from servers import core
from servers.openai_format import embedding_response

pytestmark = pytest.mark.skipif(openai_codec.simdjson is None, reason="pysimdjson missing")


def server_body(n: int, dims: int, encoding: str = "float") -> bytes:
    request = {"input": [f"text {i}" for i in range(n)], "dimensions": dims,
               "encoding_format": encoding}
    params = core.parse_embed_request(request)
    return embedding_response(params, core.embed_batch(params))


def orjson_path(raw: bytes) -> np.ndarray:
    return embedding_vectors(orjson.loads(raw))


@pytest.mark.parametrize("n,dims", [(1, 8), (1, 64), (2, 256), (8, 1536)])
def test_server_bodies_take_the_fast_path_bit_for_bit(n, dims):
    raw = server_body(n, dims)
    fast = _simd_vectors(raw)
    assert fast is not None                      # the project's server: the fast path
    expected = orjson_path(raw)
    assert fast.dtype.str == "<f4" and fast.shape == (n, dims)
    assert fast.tobytes() == expected.tobytes()
    assert decode_embeddings(raw).tobytes() == expected.tobytes()
    params = core.parse_embed_request({"input": [f"text {i}" for i in range(n)],
                                       "dimensions": dims})
    assert expected.tobytes() == core.embed_batch(params).tobytes()


def test_base64_bodies_go_the_orjson_way():
    raw = server_body(3, 64, "base64")
    assert _simd_vectors(raw) is None
    assert decode_embeddings(raw).tobytes() == orjson_path(raw).tobytes()


def body(items: list, **extra) -> bytes:
    return orjson.dumps({"object": "list", "data": items, "model": "m", **extra}) + b" " * 1200


def item(i: int, emb) -> dict:
    return {"object": "embedding", "index": i, "embedding": emb}


def test_out_of_order_rows_are_sorted_by_index():
    raw = body([item(1, [3.0, 4.0]), item(0, [1.0, 2.0])])
    assert _simd_vectors(raw) is None
    assert decode_embeddings(raw).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_integers_decode_like_floats():
    raw = body([item(0, [1, 2.5, -3]), item(1, [0, 0.0, 1e-5])])
    assert _simd_vectors(raw) is not None
    assert decode_embeddings(raw).tobytes() == orjson_path(raw).tobytes()


@pytest.mark.parametrize("raw", [
    body([item(0, [[1.0], [2.0]])]),                 # nested: as_buffer would flatten it
    body([item(0, [1.0, 2.0])], extra=[1, 2]),       # another array anywhere
    body([item(0, [1.0, 2.0])], model="a[b"),        # '[' in a string: refused, still right
    body([item(0, [1.0, True])]),                    # a boolean
    body([item(0, "AACAPw==")]),                     # base64
])
def test_unusual_bodies_leave_the_fast_path(raw):
    assert _simd_vectors(raw) is None
    expected = orjson_path(raw)
    assert decode_embeddings(raw).tobytes() == expected.tobytes()


@pytest.mark.parametrize("raw,match", [
    (body([item(0, [1.0, 2.0]), item(1, [1.0])]), "malformed"),          # ragged
    (body([{"index": 0}]), "malformed"),                                 # no embedding
    (body([]), "malformed"),                                             # no rows
    (b'{"data": [' + b"1.0, " * 400 + b"", "not JSON"),                 # cut short
    (b"<html>" + b" " * 2000 + b"</html>", "not JSON"),
])
def test_bad_bodies_are_protocol_violations(raw, match):
    with pytest.raises(ProtocolViolation, match=match):
        decode_embeddings(raw)
    assert decode_embeddings(server_body(2, 256)).shape == (2, 256)   # parser still usable


def test_parser_busy_falls_back_to_a_fresh_one():
    held = openai_codec._PARSER.parse(server_body(1, 256))["data"]   # pins the parser
    raw = server_body(2, 256)
    assert decode_embeddings(raw).tobytes() == orjson_path(raw).tobytes()
    del held


def test_vectors_are_independent_of_the_body():
    raw = bytearray(server_body(1, 256))
    vectors = decode_embeddings(bytes(raw))
    copy = vectors.copy()
    del raw
    decode_embeddings(server_body(2, 256))      # the parser reused for another document
    assert vectors.tobytes() == copy.tobytes()


def test_small_bodies_use_orjson():
    raw = server_body(1, 8)
    assert len(raw) < openai_codec.SIMDJSON_MIN_BYTES
    assert decode_embeddings(raw).tobytes() == orjson_path(raw).tobytes()


@pytest.mark.parametrize("value,us", [
    ("app;dur=1.283", 1283.0), (b"app;dur=1.283", 1283.0), (b"app;dur=0", 0.0),
    (b"db;dur=2, app;dur=3", 3000.0), (b"app;desc=x;dur=4", 4000.0), (b"app;dur=5, db;dur=1", 5000.0),
    (b"db;dur=2", None), (b"", None), (None, None),
])
def test_server_timing_bytes_and_str(value, us):
    assert parse_server_timing(value) == us


def test_b64_rows_match():
    v = np.arange(4, dtype="<f4")
    raw = body([item(0, base64.b64encode(v.tobytes()).decode())])
    assert decode_embeddings(raw).tobytes() == v.reshape(1, 4).tobytes()
