"""Schema fuzzing: schemathesis generates requests from the /openapi.json each server
serves (the bare ASGI app and FastAPI), valid ones and ones that break the schema, and
sends them over real sockets. No request may get a 5xx, and every refusal must be an
OpenAI-shaped error (`error.message`, `error.type`, `error.code`). Bounded: a fixed
number of derandomized examples per mode, a few seconds per server."""

from __future__ import annotations

import orjson
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES = 60           # per server and mode: enough to reach every route, fast to run
KEY = "sk-fuzz"
# The GET stream form takes max_tokens, ttft_ms and itl_ms in the query, and the fuzzer
# likes their documented maxima: limits that keep any stream it asks for short.
LIMITS = ["--max-tokens", "64", "--max-model-ms", "20"]


def check_answer(case, response) -> None:
    where = f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        error = orjson.loads(response.content).get("error")
        assert isinstance(error, dict), where
        assert isinstance(error.get("message"), str) and error["message"], where
        assert error.get("type") in ("invalid_request_error", "server_error"), where
        assert isinstance(error.get("code"), str) and error["code"], where


@pytest.mark.parametrize("kind", ["h1", "fastapi-h1"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("key", [KEY, None], ids=["right-key", "no-key"])
def test_no_5xx_and_openai_shaped_errors(servers, kind, mode, key):
    srv = servers.start(kind, api_key=KEY, extra=LIMITS)
    base = f"http://127.0.0.1:{srv.port}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", timeout=10)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    answered, statuses = set(), set()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(mode))
    def fuzz(case):
        response = case.call(base_url=base, headers=headers, timeout=10)
        check_answer(case, response)
        answered.add((case.method, case.operation.path))
        statuses.add(response.status_code)

    fuzz()
    # Every route the document lists was reached (a silent empty schema would pass);
    # breaking the schema needs a body, so the negative mode reaches the POST routes.
    routes = {(m.upper(), p) for p, ops in schema.raw_schema["paths"].items() for m in ops}
    if mode == GenerationMode.NEGATIVE:
        routes = {r for r in routes if r[0] == "POST"}
    assert len(routes) >= 3 and answered >= routes, (routes, answered)
    # ... and the error shape was checked on real refusals.
    expected = ({401} if key is None else {200, 404} if mode == GenerationMode.POSITIVE
                else {400})
    assert statuses >= expected, statuses
