import numpy as np
import pytest

from servers import core
from servers.core import Limits, RequestError, parse_embed_request, parse_generate_request


def test_embedding_is_deterministic_unit_norm_float32():
    a = core.embed_one("hello", 1536, seed=3)
    b = core.embed_one("hello", 1536, seed=3)
    assert a.dtype == np.dtype("<f4") and a.shape == (1536,)
    assert a.tobytes() == b.tobytes()
    assert abs(float(np.linalg.norm(a.astype(np.float64))) - 1.0) < 1e-6


@pytest.mark.parametrize("change", [("hello!", 1536, 3), ("hello", 1535, 3), ("hello", 1536, 4)])
def test_embedding_depends_on_text_dimensions_and_seed(change):
    base = core.embed_one("hello", 1536, 3)
    other = core.embed_one(*change)
    assert other.shape != base.shape or other.tobytes() != base.tobytes()


@pytest.mark.parametrize("dims", [1, 2, 768, 8192])
def test_any_dimension(dims):
    v = core.embed_one("x", dims)
    assert v.shape == (dims,)
    assert abs(float(np.linalg.norm(v.astype(np.float64))) - 1.0) < 1e-5


def test_batch_matches_single_inputs():
    params = parse_embed_request({"input": ["a", "b", "c"], "dimensions": 64})
    batch = core.embed_batch(params)
    assert batch.shape == (3, 64)
    assert batch[1].tobytes() == core.embed_one("b", 64).tobytes()


def test_base64_is_little_endian_float32():
    import base64
    v = core.embed_one("x", 8)
    assert np.frombuffer(base64.b64decode(core.vector_b64(v)), "<f4").tobytes() == v.tobytes()


def test_tokens_are_deterministic_per_prompt_and_seed():
    p = parse_generate_request({"messages": [{"role": "user", "content": "hi"}],
                                "max_tokens": 50}, chat=True)
    assert core.tokens_for(p) == core.tokens_for(p)
    assert len(core.tokens_for(p)) == 50
    q = parse_generate_request({"messages": [{"role": "user", "content": "hi"}],
                                "max_tokens": 50, "wirebench": {"seed": 1}}, chat=True)
    assert core.tokens_for(p) != core.tokens_for(q)


def test_schedule_is_absolute():
    p = core.GenerateParams("x", max_tokens=4, ttft_ms=50, itl_ms=10)
    assert [core.emit_deadline_ns(1000, p, k) for k in range(4)] == [
        1000 + 50_000_000 + k * 10_000_000 for k in range(4)]


@pytest.mark.parametrize("body, param, status", [
    ([1, 2], None, 400),
    ({}, "input", 400),
    ({"input": 5}, "input", 400),
    ({"input": []}, "input", 400),
    ({"input": ["a", 3]}, "input", 400),
    ({"input": "a", "dimensions": 0}, "dimensions", 400),
    ({"input": "a", "dimensions": 8193}, "dimensions", 400),
    ({"input": "a", "dimensions": "12"}, "dimensions", 400),
    ({"input": "a", "encoding_format": "hex"}, "encoding_format", 400),
    ({"input": "a", "wirebench": {"compute_ms": -1}}, "wirebench.compute_ms", 400),
    ({"input": ["a"] * 3}, "input", 413),
])
def test_embed_validation_names_the_field(body, param, status):
    with pytest.raises(RequestError) as err:
        parse_embed_request(body, Limits(max_batch=2))
    assert err.value.status == status
    assert err.value.param == param
    if param:
        assert param.split(".")[-1] in err.value.message


def test_unknown_fields_are_accepted():
    p = parse_embed_request({"input": "a", "user": "u", "something_new": {"x": 1}})
    assert p.inputs == ("a",)


@pytest.mark.parametrize("body, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "wirebench": {"itl_ms": "fast"}},
     "wirebench.itl_ms"),
])
def test_generate_validation_names_the_field(body, param):
    with pytest.raises(RequestError) as err:
        parse_generate_request(body, chat=True)
    assert err.value.param == param
