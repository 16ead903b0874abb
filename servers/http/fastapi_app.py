"""The same backend behind FastAPI, the framework the project's users deploy.

Request and response bodies are pydantic models that follow OpenAI's schemas, and the
response goes through FastAPI's `response_model` serialisation, as a typical service
does: the difference from the bare ASGI app (servers.http.asgi_app) is what the framework
costs per request. Validation of the values themselves (limits, batch size, knobs)
stays in servers.core, so both apps refuse the same requests with the same codes.
Served at /openapi.json (and /docs) by FastAPI itself; `openapi_document()` is the same
document for the bare app's /openapi.json.
"""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, Literal, Optional, Union

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from base.clock import now_ns
from servers.core import (EMBED_MODEL_ID, MODEL_ID, Limits, RequestError, Usage, count_tokens,
                   parse_embed_request, parse_generate_request, vector_b64)
from servers.model import Model
from servers.openai_format import StreamFormatter, dumps, model_card, models_response
from servers.http import browser_page
from servers.http.query import check_key, openapi_parameters, parse_generate_query

# ------------------------------------------------------------------ OpenAI schemas


class _Open(BaseModel):
    # OpenAI clients send fields this fake model ignores; unknown fields are accepted.
    model_config = ConfigDict(extra="allow")


class EmbeddingRequest(_Open):
    input: Union[str, list[str], list[int], list[list[int]]]
    model: str = EMBED_MODEL_ID
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = None
    user: Optional[str] = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ChatMessage(_Open):
    role: str
    content: Union[str, list[Any], None] = None


class StreamOptions(_Open):
    include_usage: Optional[bool] = None


class ChatCompletionRequest(_Open):
    model: str = MODEL_ID
    messages: list[ChatMessage]
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None


class CompletionRequest(_Open):
    model: str = MODEL_ID
    prompt: Union[str, list[str], None] = None
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[int] = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: Optional[str] = None
    parent: Optional[str] = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS = {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse},
           404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}}
_SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}
_STREAM_RESPONSES = {200: {"description": "the stream: `data: {chunk}` events, then "
                                          "`data: [DONE]`",
                           "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                     **_ERRORS}


class _EventStream(StreamingResponse):
    media_type = "text/event-stream"       # what the GET stream routes document


# ------------------------------------------------------------------ the app


def make_app(limits: Limits = Limits(), api_key: str | None = None) -> FastAPI:
    model = Model()
    app = FastAPI(title="wirebench", version="1",
                  description="OpenAI-compatible fake embedding and streaming-LLM backend")
    app.openapi = functools.partial(_openapi, app)
    app.add_middleware(_WholeBody, limit=limits.max_body_bytes, stats=model.stats)
    expected = f"Bearer {api_key}".encode() if api_key is not None else None

    def authorised(request: Request) -> None:
        if expected is not None:
            check_key(_authorization(request), expected)

    def authorised_stream(request: Request) -> None:
        """GET streams: ?api_key= stands in for the header EventSource cannot send."""
        if expected is not None:
            check_key(_authorization(request), expected, request.scope.get("query_string", b""))

    @app.exception_handler(RequestError)
    async def _refused(request: Request, err: RequestError) -> Response:
        model.stats.errors += 1
        return Response(dumps(err.to_openai()), status_code=err.status,
                        media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> Response:
        # FastAPI decodes and validates the body before it runs the routes' key check:
        # the key comes first, as in the bare app and OpenAI (a 401, not a 400).
        try:
            (authorised_stream if request.method == "GET" else authorised)(request)
        except RequestError as refused:
            return await _refused(request, refused)
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        if first.get("type") == "json_invalid":
            return await _refused(request, RequestError(
                f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}"))
        return await _refused(request, RequestError(
            f"invalid request: {first.get('msg', 'bad body')} ({where})", param=where))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code,
                                                                 "invalid_request_error")
        where = f"{request.method} {request.url.path}"
        # Every method of the path (a path with a GET and a POST route is two routes).
        allowed = [m for r in app.routes if getattr(r, "path", None) == request.url.path
                   for m in sorted(getattr(r, "methods", None) or ()) if m != "HEAD"]
        allow = ", ".join(allowed) or _header(err.headers, "allow")
        message = {404: f"no route {where}",      # the bare app's words
                   405: f"method {request.method} not allowed on {request.url.path}; use "
                        f"{' or '.join(allowed) or allow or 'another method'}"}
        response = await _refused(request, RequestError(
            message.get(err.status_code, str(err.detail)), status=err.status_code, code=code))
        response.headers.update(err.headers or {})      # 405's Allow
        if err.status_code == 405 and allow:
            response.headers["allow"] = allow
        return response

    @app.post("/v1/embeddings", response_model=EmbeddingResponse, responses=_ERRORS,
              dependencies=[Depends(authorised)])
    async def embeddings(body: EmbeddingRequest, response: Response) -> EmbeddingResponse:
        t0 = now_ns()
        params = parse_embed_request(body.model_dump(exclude_none=True), limits)
        vectors = await model.embed(params, t0)
        data = [Embedding(index=i, embedding=_vector(v, params.encoding_format))
                for i, v in enumerate(vectors)]
        tokens = sum(count_tokens(t) for t in params.inputs)
        response.headers["server-timing"] = _timing(t0)
        return EmbeddingResponse(data=data, model=params.model,
                                 usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))

    @app.post("/v1/chat/completions", responses=_ERRORS, dependencies=[Depends(authorised)])
    async def chat(body: ChatCompletionRequest) -> Response:
        return await _generate(model, limits, body.model_dump(exclude_none=True), chat=True)

    @app.post("/v1/completions", responses=_ERRORS, dependencies=[Depends(authorised)])
    async def completions(body: CompletionRequest) -> Response:
        return await _generate(model, limits, body.model_dump(exclude_none=True), chat=False)

    @app.get("/v1/chat/completions", responses=_STREAM_RESPONSES,
             response_class=_EventStream, dependencies=[Depends(authorised_stream)],
             openapi_extra={"parameters": openapi_parameters(True, limits)},
             summary="Chat completion stream, parameters in the query (EventSource)")
    async def chat_stream(request: Request) -> Response:
        params = parse_generate_query(request.scope.get("query_string", b""), chat=True,
                                      limits=limits)
        return await _generate_params(model, params, now_ns())

    @app.get("/v1/completions", responses=_STREAM_RESPONSES,
             response_class=_EventStream, dependencies=[Depends(authorised_stream)],
             openapi_extra={"parameters": openapi_parameters(False, limits)},
             summary="Completion stream, parameters in the query (EventSource)")
    async def completions_stream(request: Request) -> Response:
        params = parse_generate_query(request.scope.get("query_string", b""), chat=False,
                                      limits=limits)
        return await _generate_params(model, params, now_ns())

    @app.get("/v1/models", response_model=ModelList, responses=_ERRORS,
             dependencies=[Depends(authorised)])
    async def models() -> Any:
        return orjson.loads(models_response())

    @app.get("/v1/models/{model_id}", response_model=ModelCard, responses=_ERRORS,
             dependencies=[Depends(authorised)])
    async def retrieve(model_id: str) -> Any:
        return orjson.loads(model_card(model_id))

    @app.get(browser_page.PATH, include_in_schema=False)   # the browser engine's page
    async def bench_page() -> Response:
        return Response(browser_page.PAGE, headers={k.decode(): v.decode()
                                                    for k, v in browser_page.HEADERS})

    @app.get("/health")
    async def health(request: Request) -> Any:
        # As the bare app: liveness for anyone, the counters only with the key.
        try:
            authorised(request)
        except RequestError:
            return {"status": "ok"}
        return {"status": "ok", "stats": model.stats.as_dict()}

    return app


class _WholeBody:
    """Reads the whole request body before the routes see it, as the bare app does: a body
    over the limit is refused with 413 (over HTTP/2 at once, on its content-length or
    as soon as it passes the limit: servers/http/h2_frames.py resets the stream; else
    once drained), and every other early refusal (401, 404, 405) answers a request whose
    body was read (a response before its request wedged aioquic). Counts requests."""

    def __init__(self, app: Any, limit: int, stats: Any) -> None:
        self.app, self.limit, self.stats = app, limit, stats

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.stats.requests += 1
        declared = next((int(v) for k, v in scope["headers"]
                         if k == b"content-length" and v.isdigit()), 0)
        early = scope.get("http_version") == "2"
        chunks, size, more = [], 0, not (early and declared > self.limit)
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size <= self.limit and declared <= self.limit:
                chunks.append(chunk)
            elif early:
                break
        if max(size, declared) > self.limit:
            self.stats.errors += 1
            body = dumps(RequestError(f"request body of {max(size, declared)} bytes exceeds the "
                                      f"limit of {self.limit} bytes", status=413,
                                      code="request_too_large").to_openai())
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:                    # afterwards: the client's disconnect
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document without its 422 responses: validation failures answer 400 in
    OpenAI's error shape here (the handler above), as the bare app does."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        for operations in doc["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = doc
    return app.openapi_schema


@functools.cache
def openapi_document() -> bytes:
    """The FastAPI app's /openapi.json, for the bare app (built on first use, so the bare
    app's requests never pay for FastAPI)."""
    return dumps(make_app().openapi())


def _header(headers: dict | None, name: str) -> str | None:
    return next((v for k, v in (headers or {}).items() if k.lower() == name), None)


def _vector(v: Any, encoding: str) -> Any:
    # Floats as the bare app writes them, float32's shortest form (orjson's numpy path):
    # `v.tolist()` widens to float64 and its 17-digit reprs made the body 1.7x larger.
    return vector_b64(v) if encoding == "base64" else orjson.loads(dumps(v))


def _timing(t0_ns: int) -> str:
    return "app;dur=%.3f" % ((now_ns() - t0_ns) / 1e6)


def _authorization(request: Request) -> bytes | None:
    value = request.headers.get("authorization")
    return value.encode("latin-1") if value is not None else None


async def _generate(model: Model, limits: Limits, body: dict, *, chat: bool) -> Response:
    t0 = now_ns()
    params = parse_generate_request(body, chat=chat, limits=limits)
    return await _generate_params(model, params, t0)


async def _generate_params(model: Model, params: Any, t0: int) -> Response:
    fmt = StreamFormatter(params)
    if not params.stream:
        texts = [event.text async for event in model.stream(params, t0)]
        usage = Usage(params.prompt_tokens, len(texts))
        server_us = round((now_ns() - t0) / 1e3, 1)
        return Response(fmt.complete("".join(texts), usage, server_us),
                        media_type="application/json", headers={"server-timing": _timing(t0)})

    async def events() -> Any:
        count = 0
        async for event in model.stream(params, t0):
            yield b"data: " + dumps(fmt.token(event.index, event.text, event.emit_ns)) + b"\n\n"
            count += 1
        tail = [b"data: " + dumps(fmt.finish("length", round((now_ns() - t0) / 1e3, 1)))
                + b"\n\n"]
        if params.include_usage:
            tail.append(b"data: " + dumps(fmt.usage(Usage(params.prompt_tokens, count)))
                        + b"\n\n")
        yield b"".join(tail) + b"data: [DONE]\n\n"

    return StreamingResponse(events(), headers=_SSE)
