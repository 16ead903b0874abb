"""The WebSocket adapter: JSON messages multiplexed by `id` on one connection.

Message format: docs/websocket-protocol.md. Every request runs as its own task, so
concurrent requests on one connection interleave and replies are told apart by id.
Validation is core's (same refusals as every other protocol); a bad message gets an
error message and the connection stays usable. permessage-deflate is off: it cuts
embedding throughput about 80x (ANCHORS.md). Browsers: a handshake with an Origin must
come from a --cors origin or the server's own (else 403), and with --api-key a page
authenticates with the subprotocol `wirebench.bearer.<key>` or `?api_key=<key>` (_Gate).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import http
import logging
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from base.clock import now_ns
from servers.core import Limits, RequestError, Usage, parse_embed_request, parse_generate_request
from servers.model import Model
from servers.openai_format import embedding_response
from servers.options import ServerOptions
from servers.http import browser_page
from servers.http.query import query_api_key

log = logging.getLogger("wirebench.ws")

_dumps = orjson.dumps


def _error_frame(rid: Any, exc: RequestError) -> bytes:
    return _dumps({"id": rid, "type": "error", **exc.to_openai(), "status": exc.status})


def _message(raw: str | bytes) -> tuple[Any, dict]:
    """(id, message) of a request, or RequestError naming what is wrong with it."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"message is not valid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise RequestError(f"message must be a JSON object, got {type(msg).__name__}")
    rid = msg.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise RequestError("'id' is required: a string or integer naming the request",
                           param="id")
    return rid, msg


class _Session:
    """One connection: reads messages, runs each request as a task, routes replies."""

    def __init__(self, ws: ServerConnection, model: Model, limits: Limits) -> None:
        self.ws = ws
        self.model = model
        self.stats = model.stats
        self.limits = limits
        self.tasks: dict[Any, asyncio.Task] = {}

    async def run(self) -> None:
        try:
            while True:
                # Text frames are decoded here, so invalid UTF-8 closes the connection
                # with 1007 (RFC 6455 section 8.1); orjson takes str or bytes alike.
                raw = await self.ws.recv()
                await self.dispatch(raw, now_ns())
        except ConnectionClosed:
            pass
        finally:
            # The client is gone: stop its generations (Model counts them cancelled).
            for task in self.tasks.values():
                task.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def dispatch(self, raw: str | bytes, t0: int) -> None:
        try:
            rid, msg = _message(raw)
        except RequestError as exc:
            await self.refuse(None, exc)
            return
        kind = msg.get("type")
        if kind == "embed" or kind == "generate":
            if rid in self.tasks:   # ids must be unique while in flight: cancel names one
                await self.refuse(rid, RequestError(
                    f"request id {rid!r} is already in flight on this connection", param="id"))
                return
            self.stats.requests += 1
            self.start(rid, self.embed if kind == "embed" else self.generate, msg.get("body"), t0)
        elif kind == "stats":
            await self.ws.send(_dumps({"id": rid, "type": "stats",
                                       "stats": self.stats.as_dict()}), text=True)
        elif kind == "cancel":
            task = self.tasks.get(rid)
            if task is not None:   # an unknown id may simply have finished already
                task.cancel()
        else:
            await self.refuse(rid, RequestError(
                f"'type' must be one of embed, generate, stats, cancel; got {kind!r}",
                param="type"))

    def start(self, rid: Any, handler: Callable, body: Any, t0: int) -> None:
        task = asyncio.create_task(self.guarded(handler, rid, body, t0))
        self.tasks[rid] = task
        task.add_done_callback(functools.partial(self.forget, rid))

    def forget(self, rid: Any, task: asyncio.Task) -> None:
        if self.tasks.get(rid) is task:
            del self.tasks[rid]

    async def refuse(self, rid: Any, exc: RequestError) -> None:
        """A message refused before it became a request still counts as one."""
        self.stats.requests += 1
        await self.send_error(rid, exc)

    async def guarded(self, handler: Callable, rid: Any, body: Any, t0: int) -> None:
        try:
            await handler(rid, body, t0)
        except RequestError as exc:
            await self.send_error(rid, exc)
        except ConnectionClosed:
            pass
        except Exception as exc:   # a bug must still answer, or the client waits forever
            log.exception("request %r failed", rid)
            await self.send_error(rid, RequestError(f"internal error: {exc}", status=500,
                                                    code="server_error"))

    async def send_error(self, rid: Any, exc: RequestError) -> None:
        self.stats.errors += 1
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(_error_frame(rid, exc), text=True)

    async def embed(self, rid: Any, body: Any, t0: int) -> None:
        params = parse_embed_request(body, self.limits)
        payload = await self.model.embed_encoded(params, t0, "json", embedding_response)
        # Body last and spliced in as bytes: byte-identical to the HTTP body, no re-dump.
        head = b"".join((b'{"id":', _dumps(rid), b',"type":"embedding","server_time_us":',
                         _dumps((now_ns() - t0) / 1e3), b',"body":'))
        await self.ws.send(b"".join((head, payload, b"}")), text=True)

    async def generate(self, rid: Any, body: Any, t0: int) -> None:
        params = parse_generate_request(body, chat=True, limits=self.limits)
        sent = 0
        # aclosing: a cancelled send closes the generator now, so Model counts it.
        async with contextlib.aclosing(self.model.stream(params, t0)) as tokens:
            async for ev in tokens:
                await self.ws.send(_dumps({"id": rid, "type": "token", "index": ev.index,
                                           "emit_ns": ev.emit_ns, "text": ev.text}), text=True)
                sent += 1
        server_time_us = (now_ns() - t0) / 1e3
        await self.ws.send(_dumps({"id": rid, "type": "done",
                                   "usage": Usage(params.prompt_tokens, sent).as_dict(),
                                   "server_time_us": server_time_us}), text=True)


# Browsers cannot set Authorization on a WebSocket upgrade: they offer this subprotocol
# (`new WebSocket(url, ["wirebench.bearer." + key])`) and the server selects it.
BEARER_PROTOCOL = "wirebench.bearer."
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def own_origins(host: str, port: int) -> set[str]:
    """The origins of this server itself (a page it served): http://host:port, with every
    loopback spelling when it listens on loopback (or on every address)."""
    names = {host} if host not in ("0.0.0.0", "::", "") else set()
    if not names or host in _LOOPBACK:
        names |= set(_LOOPBACK)
    return {f"http://{f'[{h}]' if ':' in h else h}:{port}".lower() for h in names}


def _offered(request: Request) -> list[str]:
    return [p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",") if p.strip()]


class _Gate:
    """The handshake's checks: Origin (403), then the API key (401).

    A request without Origin (not a browser) passes the first; one with an Origin must
    name a --cors origin (or --cors '*') or this server's own origin, so a page from
    elsewhere cannot drive a local server (DNS rebinding included: Host is not trusted).
    The key is accepted from `Authorization: Bearer <key>`, the offered subprotocol
    `wirebench.bearer.<key>`, or `?api_key=<key>` in the URL; constant-time compares."""

    def __init__(self, opts: ServerOptions, model: Model) -> None:
        self.model = model
        cors = opts.cors_origins
        self.any_origin = cors == ("*",)
        self.origins = {o.lower() for o in cors or ()}
        self.host = opts.host
        self.key = opts.api_key.encode() if opts.api_key else None

    def listening(self, port: int) -> None:
        self.origins |= own_origins(self.host, port)

    def _refuse(self, ws: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
        self.model.stats.requests += 1
        self.model.stats.errors += 1
        return ws.respond(status, text)

    def __call__(self, ws: ServerConnection, request: Request) -> Response | None:
        origins = request.headers.get_all("Origin")     # .get() raises on two of them
        origin = ", ".join(origins) if origins else None
        if origin is not None and not self.any_origin and (
                len(origins) != 1 or origin.lower() not in self.origins):
            return self._refuse(ws, http.HTTPStatus.FORBIDDEN,
                                f"origin {origin!r} not allowed: start the server with "
                                "--cors listing it\n")
        if self.key is None or self._authorised(request):
            return None
        return self._refuse(ws, http.HTTPStatus.UNAUTHORIZED,
                            "missing or invalid API key: send 'Authorization: Bearer <key>', "
                            f"the subprotocol '{BEARER_PROTOCOL}<key>' or ?api_key=<key>\n")

    def _authorised(self, request: Request) -> bool:
        headers = request.headers.get_all("Authorization")
        header = headers[0] if len(headers) == 1 else None
        if header is not None and hmac.compare_digest(
                header.encode("utf-8", "replace"), b"Bearer " + self.key):
            return True
        for protocol in _offered(request):
            if protocol.startswith(BEARER_PROTOCOL) and hmac.compare_digest(
                    protocol[len(BEARER_PROTOCOL):].encode("utf-8", "replace"), self.key):
                return True
        key = query_api_key(urlsplit(request.path).query.encode("latin-1", "replace"))
        return key is not None and hmac.compare_digest(key, self.key)

    def select_subprotocol(self, ws: ServerConnection, offered: Sequence[str]) -> str | None:
        """Select the offered bearer subprotocol (a browser that offered subprotocols
        fails a handshake whose answer names none); with a key, only the right one."""
        for protocol in offered:
            if protocol.startswith(BEARER_PROTOCOL) and (
                    self.key is None or hmac.compare_digest(
                        protocol[len(BEARER_PROTOCOL):].encode("utf-8", "replace"), self.key)):
                return protocol
        return None


async def serve(opts: ServerOptions, ready: Callable[[dict], None]) -> None:
    """Serve until cancelled; `ready({"port": ...})` once listening."""
    model = Model()

    async def handler(ws: ServerConnection) -> None:
        await _Session(ws, model, opts.limits).run()

    gate = _Gate(opts, model)
    async with ws_serve(handler, opts.host, opts.port, compression=None,
                        max_size=opts.limits.max_body_bytes,
                        process_request=browser_page.ws_process_request(gate),
                        select_subprotocol=gate.select_subprotocol) as server:
        port = server.sockets[0].getsockname()[1]
        gate.listening(port)
        ready({"port": port})
        await asyncio.Future()
