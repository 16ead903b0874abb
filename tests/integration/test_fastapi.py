"""FastAPI serving the same backend (kinds fastapi-h1/-h2/-h3): the same vectors and
tokens through the project's clients, OpenAI-shaped errors, /openapi.json, and the
official openai SDK unchanged."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import orjson
import pytest

from clients import open_client
from clients.base import Target
from servers import core
from servers.openai_format import embedding_response

openai = pytest.importorskip("openai")

EMBED = {"input": [f"text {i}" for i in range(8)], "dimensions": 256, "model": "wirebench-embed-1"}
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 6, "stream": True,
        "wirebench": {"itl_ms": 1}}
KINDS = {"h1": "fastapi-h1", "h2": "fastapi-h2", "h3": "fastapi-h3"}


def target(servers, tls_files, version, **kw):
    srv = servers.start(KINDS[version])
    return Target(port=srv.port, ca=tls_files.ca, **kw)


@pytest.mark.parametrize("engine", ["python", "curl"])
@pytest.mark.parametrize("version", KINDS)
async def test_same_vectors_and_tokens_as_the_bare_app(servers, tls_files, version, engine):
    t = target(servers, tls_files, version)
    expected = core.embed_batch(core.parse_embed_request(EMBED))
    async with open_client(f"rest-{version}", t, engine=engine) as client:
        result = await client.embed(EMBED)
    assert result.vectors.tobytes() == expected.tobytes()
    assert result.server_time_us is not None and result.server_time_us > 0
    # The same floats on the wire as the bare app (float32's shortest form, not float64's
    # 17 digits): the framework-cost rows must not carry a larger body.
    bare = len(embedding_response(core.parse_embed_request(EMBED), expected))
    assert abs(result.payload_down - bare) < 0.01 * bare, (result.payload_down, bare)
    params = core.parse_generate_request(CHAT, chat=True)
    async with open_client(f"sse-{version}", t, engine=engine) as client:
        stream = await client.generate(CHAT)
    assert [tok.text for tok in stream.tokens] == core.tokens_for(params)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_openapi_document_and_openai_shaped_errors(servers):
    srv = servers.start("fastapi-h1")
    status, doc = _get(f"http://127.0.0.1:{srv.port}/openapi.json")
    assert status == 200 and "/v1/embeddings" in doc["paths"]
    assert "EmbeddingRequest" in doc["components"]["schemas"]
    status, body = _get(f"http://127.0.0.1:{srv.port}/v1/nowhere")
    assert status == 404 and set(body["error"]) >= {"message", "type", "code"}


@pytest.fixture(scope="module")
def sdk(servers):
    srv = servers.start("fastapi-h1", api_key="sk-test")
    return openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="sk-test",
                         max_retries=0, timeout=20), srv


def test_sdk_embeddings_and_stream(sdk):
    client, _ = sdk
    resp = client.embeddings.create(model="wirebench-embed-1", input=["alpha", "beta"],
                                    dimensions=64, encoding_format="float")
    got = np.array([d.embedding for d in resp.data], dtype=np.float64).astype("<f4")
    want = core.embed_batch(core.parse_embed_request({"input": ["alpha", "beta"],
                                                      "dimensions": 64}))
    assert got.tobytes() == want.tobytes()
    stream = client.chat.completions.create(model="wirebench-fake-1", max_tokens=5, stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    assert sum(1 for c in stream if c.choices and c.choices[0].delta.content) == 5


def test_sdk_wrong_key_is_an_authentication_error(sdk):
    _, srv = sdk
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="wrong",
                        max_retries=0, timeout=20)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="wirebench-embed-1", input=["x"])


@pytest.mark.parametrize("body", [b"x" * 100_000, b'{"input": 12}'], ids=["not-json", "invalid"])
def test_the_key_is_checked_before_the_body_as_in_the_bare_app(sdk, body):
    """FastAPI validates a body before its routes' dependencies run; a bad body with a
    wrong key is still a 401, as the bare app and OpenAI answer it."""
    _, srv = sdk
    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/v1/embeddings", data=body,
                                 headers={"content-type": "application/json",
                                          "authorization": "Bearer wrong"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401
    assert json.loads(err.value.read())["error"]["type"] == "invalid_request_error"


def test_sdk_bad_value_is_a_bad_request(sdk):
    client, _ = sdk
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="wirebench-embed-1", input=["x"], dimensions=0)


# The bare app's bad-input table, plus an unknown model, against the FastAPI servers: the
# same statuses, OpenAI-shaped bodies, and the client keeps its connection.
from .test_http_api import BAD, raw  # noqa: E402
from clients.transport.http1 import Http1Transport  # noqa: E402
from clients.transport.http2 import Http2Transport  # noqa: E402

FASTAPI_BAD = BAD + [
    (b'{"input": "a", "model": "gpt-x"}', b"/v1/embeddings", b"POST", 404, ["gpt-x"]),
    (b'{"messages": [{"role": "user", "content": "a"}], "model": "gpt-x"}',
     b"/v1/chat/completions", b"POST", 404, ["gpt-x"]),
]
FASTAPI_CELLS = {"h1": ("fastapi-h1", Http1Transport, {}),
                 "h2": ("fastapi-h2", Http2Transport, {}),
                 "h2c": ("fastapi-h2", Http2Transport, {"tls": False})}


@pytest.mark.parametrize("cell", FASTAPI_CELLS)
@pytest.mark.parametrize("body, path, method, status, words", FASTAPI_BAD,
                         ids=[f"{b[3]}-{i}" for i, b in enumerate(FASTAPI_BAD)])
async def test_bad_input_as_the_bare_app_answers_it(servers, tls_files, cell, body, path,
                                                    method, status, words):
    kind, transport_cls, overrides = FASTAPI_CELLS[cell]
    srv = servers.start(kind, extra=["--max-batch", "4", "--max-body-bytes", "4096"]
                        + (["--h2c-port", "0"] if kind == "fastapi-h2" else []))
    port = srv.info["h2c_port"] if cell == "h2c" else srv.port
    transport = transport_cls(Target(port=port, ca=tls_files.ca, **overrides), reuse=True)
    try:
        resp, data = await raw(transport, method, path, body)
        assert resp.status == status, data
        error = orjson.loads(data)["error"]
        assert error["type"] == "invalid_request_error" and error["code"], error
        for word in words:
            assert word in error["message"], error
        if status == 404 and path != b"/v1/nothing":
            assert error["code"] == "model_not_found"
        resp, data = await raw(transport, b"POST", b"/v1/embeddings",
                               b'{"input": "ok", "dimensions": 4}')
        assert resp.status == 200 and len(orjson.loads(data)["data"][0]["embedding"]) == 4
        assert not resp.new_connection
    finally:
        await transport.close()


def test_sdk_models_retrieve_and_unknown_models(sdk):
    client, _ = sdk
    assert client.models.retrieve("wirebench-fake-1").id == "wirebench-fake-1"
    for call in (lambda: client.models.retrieve("gpt-x"),
                 lambda: client.embeddings.create(model="gpt-x", input=["x"]),
                 lambda: client.chat.completions.create(
                     model="gpt-x", messages=[{"role": "user", "content": "hi"}])):
        with pytest.raises(openai.NotFoundError) as err:
            call()
        assert (err.value.body["type"], err.value.body["code"]) == ("invalid_request_error",
                                                                     "model_not_found")


def test_bare_app_serves_the_fastapi_document(servers):
    bare, fast = servers.start("h1", api_key="sk-test"), servers.start("fastapi-h1")
    status, doc = _get(f"http://127.0.0.1:{bare.port}/openapi.json")   # no key needed
    assert status == 200
    assert doc == _get(f"http://127.0.0.1:{fast.port}/openapi.json")[1]
