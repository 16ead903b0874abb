"""The GET form of the streaming endpoints, for a browser's EventSource (GET, no headers).

    GET /v1/chat/completions?content=hello&max_tokens=32&itl_ms=5
    GET /v1/completions?prompt=once+upon&max_tokens=32

Always a stream (text/event-stream, the POST stream's events, `data: [DONE]` last).
The query parameters map onto the POST body and go through the same validation
(servers.core), so a bad value is the same 400 invalid_request_error as in a body;
`param` names the query parameter. With --api-key, `api_key=<key>` in the query stands
in for the Authorization header EventSource cannot send (the key then sits in URLs,
browser history and access logs: for local benchmarking only). Shared by the bare ASGI
app and the FastAPI app, so both answer alike.
"""

from __future__ import annotations

import hmac
import re
from typing import Any
from urllib.parse import parse_qsl

from servers.core import MODEL_ID, GenerateParams, Limits, RequestError, parse_generate_request

KEY_PARAM = "api_key"
MAX_FIELDS = 32
_INT = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}

# name -> (type, description); the text parameter (content / prompt) is per endpoint.
COMMON = {
    "model": ("string", f"model id (default {MODEL_ID})"),
    "max_tokens": ("integer", "tokens to generate (default 16)"),
    "include_usage": ("boolean", "send the usage chunk before [DONE] (stream_options)"),
    "ttft_ms": ("number", "wirebench knob: simulated time to first token, ms"),
    "itl_ms": ("number", "wirebench knob: simulated inter-token latency, ms"),
    "seed": ("integer", "wirebench knob: token text seed"),
}
TEXT = {True: ("content", "the user message (one user turn)"),
        False: ("prompt", "the prompt")}
_KNOBS = ("ttft_ms", "itl_ms", "seed")


def query_params(query: bytes) -> dict[str, str]:
    """The query string as a dict; a repeated name or undecodable text is a 400."""
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS, encoding="utf-8", errors="strict")
    except ValueError as exc:       # UnicodeDecodeError too: bad %-encoded UTF-8
        raise RequestError(f"query string is not valid: {exc}") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise RequestError(f"query parameter '{name}' is given more than once", param=name)
        out[name] = value
    return out


def query_api_key(query: bytes) -> bytes | None:
    """The api_key query parameter, raw (percent-decoded), or None."""
    try:
        value = query_params(query).get(KEY_PARAM)
    except RequestError:
        return None
    return value.encode() if value is not None else None


def check_key(authorization: bytes | None, expected: bytes, query: bytes | None = None) -> None:
    """The API-key check of both HTTP apps. `expected` is b"Bearer <key>". The header
    decides when present; else, when `query` is given (the GET stream form), its
    api_key parameter. Constant-time comparisons; RequestError 401 otherwise."""
    if authorization is None and query is not None:
        key = query_api_key(query)
        if key is not None:
            if hmac.compare_digest(b"Bearer " + key, expected):
                return
            raise RequestError("Incorrect API key provided", status=401,
                               code="invalid_api_key")
        raise RequestError("Missing bearer authentication in header 'Authorization' "
                           f"(or the '{KEY_PARAM}' query parameter)", status=401,
                           code="invalid_api_key")
    if authorization is None:
        raise RequestError("Missing bearer authentication in header 'Authorization'",
                           status=401, code="invalid_api_key")
    if not hmac.compare_digest(authorization, expected):
        raise RequestError("Incorrect API key provided", status=401, code="invalid_api_key")


def _convert(name: str, kind: str, value: str) -> Any:
    if kind == "integer" and _INT.fullmatch(value):
        return int(value)
    if kind == "number" and _NUMBER.fullmatch(value):
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "boolean" and value in _BOOLS:
        return _BOOLS[value]
    if kind == "string":
        return value
    raise RequestError(f"query parameter '{name}' must be {'an' if kind == 'integer' else 'a'} "
                       f"{kind}, got {value!r}", param=name)


def generate_body(query: bytes, *, chat: bool) -> dict[str, Any]:
    """The POST body the query string stands for (always `stream: true`)."""
    given = query_params(query)
    text_name = TEXT[chat][0]
    known = {text_name: ("string", ""), **COMMON}
    for name in given:
        if name not in known and name != KEY_PARAM:
            raise RequestError(f"unknown query parameter '{name}'; the GET form takes "
                               f"{', '.join(known)} (and {KEY_PARAM})", param=name)
    if text_name not in given:
        raise RequestError(f"query parameter '{text_name}' is required", param=text_name)
    values = {name: _convert(name, known[name][0], given[name])
              for name in known if name in given}
    text = values.pop(text_name)
    body: dict[str, Any] = ({"messages": [{"role": "user", "content": text}]} if chat
                            else {"prompt": text})
    body["stream"] = True
    if "include_usage" in values:
        body["stream_options"] = {"include_usage": values.pop("include_usage")}
    knobs = {k: values.pop(k) for k in _KNOBS if k in values}
    if knobs:
        body["wirebench"] = knobs
    body.update(values)         # model, max_tokens
    return body


def parse_generate_query(query: bytes, *, chat: bool, limits: Limits = Limits()
                         ) -> GenerateParams:
    """Validated stream parameters from a GET form's query string."""
    body = generate_body(query, chat=chat)
    try:
        return parse_generate_request(body, chat=chat, limits=limits)
    except RequestError as err:
        # The knobs are top-level here: name the query parameter, not wirebench.<knob>.
        if err.param and err.param.startswith("wirebench."):
            err.message = err.message.replace("'wirebench.", "'")
            err.args = (err.message,)
            err.param = err.param[len("wirebench."):]
        raise


def openapi_parameters(chat: bool, limits: Limits = Limits()) -> list[dict[str, Any]]:
    """The GET form's query parameters as OpenAPI parameter objects."""
    bounds = {"max_tokens": {"minimum": 1, "maximum": limits.max_tokens},
              "ttft_ms": {"minimum": 0, "maximum": limits.max_model_ms},
              "itl_ms": {"minimum": 0, "maximum": limits.max_model_ms},
              "seed": {"minimum": 0, "maximum": 2**63 - 1}}
    name, text = TEXT[chat]
    params = [{"name": name, "in": "query", "required": True, "description": text,
               "schema": {"type": "string"}}]
    for key, (kind, description) in COMMON.items():
        params.append({"name": key, "in": "query", "required": False,
                       "description": description,
                       "schema": {"type": kind, **bounds.get(key, {})}})
    params.append({"name": KEY_PARAM, "in": "query", "required": False,
                   "description": "the API key, for EventSource (no headers); puts the key "
                                  "in URLs and logs: local benchmarking only",
                   "schema": {"type": "string"}})
    return params
