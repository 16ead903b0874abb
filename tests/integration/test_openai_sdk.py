"""The official openai SDK works against the HTTP server unchanged."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from servers import core

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def sdk(servers):
    srv = servers.start("h1", api_key="sk-test")
    return openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="sk-test",
                         max_retries=0, timeout=20)


INPUTS = ["alpha", "beta gamma"]


def expected(dims):
    return core.embed_batch(core.parse_embed_request({"input": INPUTS, "dimensions": dims}))


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(sdk, encoding):
    resp = sdk.embeddings.create(model="wirebench-embed-1", input=INPUTS, dimensions=256,
                                 encoding_format=encoding)
    if encoding == "base64":    # asked for explicitly, the SDK hands back the string
        got = np.stack([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in resp.data])
    else:
        got = np.array([d.embedding for d in resp.data], dtype=np.float64).astype("<f4")
    assert got.tobytes() == expected(256).tobytes()
    assert resp.usage.prompt_tokens == 3


def test_default_sdk_call_uses_base64_transparently(sdk):
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    resp = sdk.embeddings.create(model="wirebench-embed-1", input=INPUTS, dimensions=64)
    got = np.array([d.embedding for d in resp.data], dtype=np.float64).astype("<f4")
    assert got.tobytes() == expected(64).tobytes()


def test_streamed_chat_completion(sdk):
    stream = sdk.chat.completions.create(
        model="wirebench-fake-1", messages=[{"role": "user", "content": "hello there"}],
        max_tokens=10, stream=True, stream_options={"include_usage": True},
        extra_body={"wirebench": {"itl_ms": 1}})
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    params = core.parse_generate_request(
        {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 10}, chat=True)
    assert "".join(content) == "".join(core.tokens_for(params))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].usage.completion_tokens == 10


def test_models_list(sdk):
    ids = {m.id for m in sdk.models.list()}
    assert {"wirebench-fake-1", "wirebench-embed-1"} <= ids


def test_bad_key_is_an_authentication_error(servers):
    srv = servers.start("h1", api_key="sk-test")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="nope",
                           max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model="m", input="x")


def test_models_retrieve_and_an_unknown_model_is_not_found(sdk):
    assert sdk.models.retrieve("wirebench-embed-1").id == "wirebench-embed-1"
    with pytest.raises(openai.NotFoundError) as err:
        sdk.models.retrieve("no-such-model")
    assert err.value.body["code"] == "model_not_found"
    assert err.value.body["type"] == "invalid_request_error"


def test_wrong_key_is_an_authentication_error_with_openai_types(servers):
    srv = servers.start("h1", api_key="sk-test")
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="wrong",
                        max_retries=0, timeout=20)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.embeddings.create(model="wirebench-embed-1", input=["x"])
    assert (err.value.body["type"], err.value.body["code"]) == ("invalid_request_error",
                                                                 "invalid_api_key")


def test_an_unknown_model_in_a_request_is_not_found(sdk):
    # OpenAI answers 404 model_not_found; the SDK raises NotFoundError (it was a 200).
    for call in (lambda: sdk.embeddings.create(model="gpt-x", input=["x"]),
                 lambda: sdk.chat.completions.create(
                     model="gpt-x", messages=[{"role": "user", "content": "hi"}]),
                 lambda: sdk.completions.create(model="gpt-x", prompt="hi")):
        with pytest.raises(openai.NotFoundError) as err:
            call()
        assert (err.value.body["type"], err.value.body["code"], err.value.body["param"]) == (
            "invalid_request_error", "model_not_found", "model")


@pytest.mark.parametrize("method, path, body, status, code", [
    ("post", "/nowhere", {}, 404, "not_found"),
    ("get", "/embeddings", None, 405, "method_not_allowed"),
    ("post", "/embeddings", {"input": "a" * 5_000_000}, 413, "request_too_large"),
])
def test_refusals_carry_openais_type_and_a_specific_code(sdk, method, path, body, status,
                                                         code):
    kwargs = {"cast_to": object} | ({"body": body} if method == "post" else {})
    with pytest.raises(openai.APIStatusError) as err:
        getattr(sdk, method)(path, **kwargs)
    assert err.value.status_code == status
    assert (err.value.body["type"], err.value.body["code"]) == ("invalid_request_error", code)
