"""The same backend behind FastAPI, the framework the project's users deploy.

Request and response bodies are pydantic models that follow OpenAI's schemas, and the
response goes through FastAPI's `response_model` serialisation, as a typical service
does: the difference from the bare ASGI app (servers.asgi_app) is what the framework
costs per request. Validation of the values themselves (limits, batch size, knobs)
stays in servers.core, so both apps refuse the same requests with the same codes.
Served at /openapi.json (and /docs) by FastAPI itself.
"""

from __future__ import annotations

import hmac
from typing import Any, Literal, Optional, Union

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from .clock import now_ns
from .core import (EMBED_MODEL_ID, MODEL_ID, Limits, RequestError, Usage, count_tokens,
                   parse_embed_request, parse_generate_request, vector_b64)
from .model import Model
from .openai_format import StreamFormatter, dumps, model_card, models_response

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


# ------------------------------------------------------------------ the app


def make_app(limits: Limits = Limits(), api_key: str | None = None) -> FastAPI:
    model = Model()
    app = FastAPI(title="wirebench (FastAPI)", version="1",
                  description="OpenAI-compatible fake embedding and streaming-LLM backend")
    expected = f"Bearer {api_key}".encode() if api_key is not None else None

    def authorised(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise RequestError("Incorrect API key provided" if given else
                               "Missing bearer authentication in header 'Authorization'",
                               status=401, code="invalid_api_key")

    @app.exception_handler(RequestError)
    async def _refused(request: Request, err: RequestError) -> Response:
        model.stats.errors += 1
        return Response(dumps(err.to_openai()), status_code=err.status,
                        media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> Response:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return await _refused(request, RequestError(
            f"invalid request: {first.get('msg', 'bad body')} ({where})", param=where))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code,
                                                                 "invalid_request_error")
        return await _refused(request, RequestError(str(err.detail), status=err.status_code,
                                                    code=code))

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

    @app.get("/v1/models", response_model=ModelList, dependencies=[Depends(authorised)])
    async def models() -> Any:
        return orjson.loads(models_response())

    @app.get("/v1/models/{model_id}", response_model=ModelCard, responses=_ERRORS,
             dependencies=[Depends(authorised)])
    async def retrieve(model_id: str) -> Any:
        return orjson.loads(model_card(model_id))

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok", "stats": model.stats.as_dict()}

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        model.stats.requests += 1
        return await call_next(request)

    return app


def _vector(v: Any, encoding: str) -> Any:
    return vector_b64(v) if encoding == "base64" else v.tolist()


def _timing(t0_ns: int) -> str:
    return "app;dur=%.3f" % ((now_ns() - t0_ns) / 1e6)


async def _generate(model: Model, limits: Limits, body: dict, *, chat: bool) -> Response:
    t0 = now_ns()
    params = parse_generate_request(body, chat=chat, limits=limits)
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
