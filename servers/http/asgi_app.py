"""The OpenAI-compatible HTTP API as one bare ASGI app, served by every HTTP server.

Bare ASGI rather than FastAPI on purpose: ANCHORS.md measured FastAPI at ~185 us of
server CPU per request against ~70 us for a bare ASGI app on uvicorn, a framework cost
larger than the protocol differences this tool exists to show. Validation lives in
servers.core and is shared with gRPC and WebSocket, so errors read the same everywhere.

Routes: POST /v1/embeddings, POST /v1/chat/completions, POST /v1/completions,
GET /v1/chat/completions and GET /v1/completions (the stream, parameters in the query
string, for EventSource: servers.http.query), GET /v1/models, GET /v1/models/{id},
GET /health (liveness for anyone; its counters only with the API key when one is set),
GET /openapi.json (servers.http.fastapi_app's document).
Every non-streaming response carries `Server-Timing: app;dur=<ms>` (request fully
received to response ready); streams carry the server time in their last chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Awaitable, Callable

import orjson

from base.clock import now_ns
from servers.core import (GenerateParams, Limits, RequestError, Usage, parse_embed_request,
                   parse_generate_request)
from servers.model import Model
from servers.openai_format import (StreamFormatter, dumps, embedding_response, model_card,
                            models_response)
from servers.http import browser_page
from servers.http.query import check_key, parse_generate_query

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_DONE = b"data: [DONE]\n\n"
_MODEL_PREFIX = "/v1/models/"
# No key needed (FastAPI's are open too); the browser engine's page holds no data, and a
# browser loads it before it can present a key.
_OPEN_PATHS = ("/health", "/openapi.json", browser_page.PATH)
# GET streams (EventSource sends no headers) may carry the key as ?api_key=.
_QUERY_KEY_PATHS = ("/v1/chat/completions", "/v1/completions")


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


def _timing(t0_ns: int) -> tuple[bytes, bytes]:
    return (b"server-timing", b"app;dur=%.3f" % ((now_ns() - t0_ns) / 1e6))


def _server_time_us(t0_ns: int) -> float:
    return round((now_ns() - t0_ns) / 1e3, 1)


class App:
    def __init__(self, limits: Limits = Limits(), api_key: str | None = None,
                 model: Model | None = None) -> None:
        self.limits = limits
        self.model = model or Model()
        self.stats = self.model.stats
        self._auth = b"Bearer " + api_key.encode() if api_key is not None else None
        self.routes: dict[str, dict[str, Callable]] = {
            "/v1/embeddings": {"POST": self._embeddings},
            "/v1/chat/completions": {"POST": self._chat, "GET": self._chat_get},
            "/v1/completions": {"POST": self._completions, "GET": self._completions_get},
            "/v1/models": {"GET": self._models},
            "/health": {"GET": self._health},
            "/openapi.json": {"GET": self._openapi},
            browser_page.PATH: {"GET": browser_page.asgi_handler},   # the browser engine's page
        }
        self._model_route = {"GET": self._model}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self.stats.requests += 1
        route = self.routes.get(scope["path"])
        if route is None and scope["path"].startswith(_MODEL_PREFIX):
            route = self._model_route
        method = scope["method"]
        try:
            handler = route.get(method) if route is not None else None
            if handler is None:
                await _drain(receive)       # a response before its request wedged aioquic
            if route is None:
                raise RequestError(f"no route {scope['method']} {scope['path']}; try "
                                   f"{', '.join(self.routes)}", status=404, code="not_found")
            if handler is None:
                raise RequestError(f"method {method} not allowed on {scope['path']}"
                                   f"; use {' or '.join(route)}", status=405,
                                   code="method_not_allowed")
            if self._auth is not None and scope["path"] not in _OPEN_PATHS:
                try:
                    self._check_auth(scope, query=method == "GET"
                                     and scope["path"] in _QUERY_KEY_PATHS)
                except RequestError:
                    # Read the refused body first, as the 404/405 paths do: a response
                    # that ends before its request wedged hypercorn's HTTP/3 server and
                    # dropped its HTTP/2 connection (both seen with curl).
                    await _drain(receive)
                    raise
            await handler(scope, receive, send)
        except _ClientGone:
            return
        except RequestError as err:
            self.stats.errors += 1
            extra = ([(b"allow", ", ".join(route).encode())] if err.status == 405
                     else [])
            await self._send_json(send, err.status, dumps(err.to_openai()), extra)

    # ------------------------------------------------------------ plumbing

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _check_auth(self, scope: Scope, query: bool = False) -> None:
        """The Authorization header; with `query` (GET streams) ?api_key= stands in."""
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        check_key(header, self._auth, scope.get("query_string", b"") if query else None)

    async def _read_json(self, scope: Scope, receive: Receive) -> Any:
        limit = self.limits.max_body_bytes
        declared = next((int(v) for k, v in scope["headers"]
                         if k == b"content-length" and v.isdigit()), None)
        # HTTP/2 refuses at once: on the declared length before any byte is read, else
        # as soon as the body passes the limit; the server then resets the stream, so
        # the client stops sending (servers/http/h2_frames.py). HTTP/1.1 and HTTP/3 read
        # the body to its end first (a response before its request wedged aioquic).
        early = scope.get("http_version") == "2"
        if early and declared is not None and declared > limit:
            raise _too_large(declared, limit)
        chunks, size = [], 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size <= limit and (declared is None or declared <= limit):
                chunks.append(chunk)
            elif early:
                raise _too_large(size, limit)
        if size > limit or (declared is not None and declared > limit):
            raise _too_large(max(size, declared or 0), limit)
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"request body is not valid JSON: {exc}") from None

    @staticmethod
    async def _send_json(send: Send, status: int, body: bytes,
                         headers: list[tuple[bytes, bytes]] = ()) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", b"%d" % len(body)), *headers]})
        await send({"type": "http.response.body", "body": body})

    # ------------------------------------------------------------ routes

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Liveness for anyone (probes carry no key); the counters only with the key
        when one is set (they tell a stranger how busy the server is)."""
        body: dict = {"status": "ok"}
        try:
            if self._auth is not None:
                self._check_auth(scope)
            body["stats"] = self.stats.as_dict()
        except RequestError:
            pass
        await self._send_json(send, 200, dumps(body))

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The FastAPI app's document (same routes, schemas and errors), imported on the
        first request for it so no other request pays for FastAPI."""
        from servers.http.fastapi_app import openapi_document
        await self._send_json(send, 200, openapi_document())

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._send_json(send, 200, models_response())

    async def _model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /v1/models/{id}: the SDK's models.retrieve."""
        await self._send_json(send, 200, model_card(scope["path"][len(_MODEL_PREFIX):]))

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._read_json(scope, receive)
        t0 = now_ns()
        params = parse_embed_request(body, self.limits)
        payload = await self.model.embed_encoded(params, t0, "json", embedding_response)
        await self._send_json(send, 200, payload, [_timing(t0)])

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, chat=True)

    async def _completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, chat=False)

    async def _chat_get(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, chat=True, query=True)

    async def _completions_get(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, chat=False, query=True)

    async def _generate(self, scope: Scope, receive: Receive, send: Send, *, chat: bool,
                        query: bool = False) -> None:
        if query:       # GET: the parameters are the query string's, always a stream
            await _drain(receive, gone=True)
            t0 = now_ns()
            params = parse_generate_query(scope.get("query_string", b""), chat=chat,
                                          limits=self.limits)
        else:
            body = await self._read_json(scope, receive)
            t0 = now_ns()
            params = parse_generate_request(body, chat=chat, limits=self.limits)
        if not params.stream:
            await self._generate_whole(params, t0, send)
            return
        # Stream until done or the client disconnects, whichever comes first: a client
        # that leaves must stop the generation, not leave it running to the end.
        streaming = asyncio.ensure_future(self._stream(params, t0, send))
        watching = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait((streaming, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watching):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, _ClientGone):
                await streaming

    async def _generate_whole(self, params: GenerateParams, t0: int, send: Send) -> None:
        fmt = StreamFormatter(params)
        texts = []
        async with contextlib.aclosing(self.model.stream(params, t0)) as tokens:
            async for event in tokens:
                texts.append(event.text)
        usage = Usage(params.prompt_tokens, len(texts))
        await self._send_json(send, 200, fmt.complete("".join(texts), usage,
                                                      _server_time_us(t0)), [_timing(t0)])

    async def _stream(self, params: GenerateParams, t0: int, send: Send) -> None:
        fmt = StreamFormatter(params)
        await _send_or_gone(send, {"type": "http.response.start", "status": 200,
                                   "headers": _SSE_HEADERS})
        count = 0
        async with contextlib.aclosing(self.model.stream(params, t0)) as tokens:
            async for event in tokens:
                chunk = fmt.token(event.index, event.text, event.emit_ns)
                await _send_or_gone(send, {"type": "http.response.body", "more_body": True,
                                           "body": b"data: " + dumps(chunk) + b"\n\n"})
                count += 1
        tail = [b"data: " + dumps(fmt.finish("length", _server_time_us(t0))) + b"\n\n"]
        if params.include_usage:
            usage = Usage(params.prompt_tokens, count)
            tail.append(b"data: " + dumps(fmt.usage(usage)) + b"\n\n")
        tail.append(_DONE)
        await _send_or_gone(send, {"type": "http.response.body", "body": b"".join(tail)})


def _too_large(size: int, limit: int) -> RequestError:
    return RequestError(f"request body of {size} bytes exceeds the limit of {limit} bytes",
                        status=413, code="request_too_large")


async def _drain(receive: Receive, gone: bool = False) -> None:
    """Read and drop a request body nobody will use (`gone`: raise _ClientGone if the
    client left meanwhile)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if gone:
                raise _ClientGone
            return
        if not message.get("more_body"):
            return


async def _send_or_gone(send: Send, message: dict) -> None:
    # hypercorn's HTTP/3 never delivers http.disconnect; a departed client shows up
    # only as a failing send (aioquic FrameUnexpected), which means the same thing.
    try:
        await send(message)
    except Exception as exc:
        raise _ClientGone from exc


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
