"""FastAPI serving the same backend (kinds fastapi-h1/-h2/-h3): the same vectors and
tokens through the project's clients, OpenAI-shaped errors, /openapi.json, and the
official openai SDK unchanged."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from clients import open_client
from clients.base import Target
from servers import core

openai = pytest.importorskip("openai")

EMBED = {"input": [f"text {i}" for i in range(8)], "dimensions": 256, "model": "m"}
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


def test_sdk_bad_value_is_a_bad_request(sdk):
    client, _ = sdk
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="wirebench-embed-1", input=["x"], dimensions=0)
