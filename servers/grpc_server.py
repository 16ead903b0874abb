"""The fake backend over gRPC (grpc.aio, cleartext HTTP/2): Embed, Generate, Stats.

Each request is turned into the OpenAI-shaped dict and validated by servers.core, so a
bad request means the same thing on every protocol; RequestError.status maps to a gRPC
status code. Handlers take and return serialized bytes (identity (de)serializers):
parse errors become a counted INVALID_ARGUMENT, and the reported server time includes
encoding, as the HTTP servers' Server-Timing does.

TLS: none; `opts.tls` is ignored (gRPC is compared as h2c, like rest-h2's h2c option).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any, Callable, NoReturn

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from protos import inference_pb2 as pb

from base.clock import now_ns
from servers.core import (EmbedParams, GenerateParams, RequestError, TokenEvent, count_tokens,
                   parse_embed_request, parse_generate_request)
from servers.model import Model
from servers.options import ServerOptions

SERVICE = "wirebench.v1.Inference"
STOP_GRACE_S = 1.0

_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT,
           401: grpc.StatusCode.UNAUTHENTICATED,
           404: grpc.StatusCode.NOT_FOUND,          # model_not_found
           413: grpc.StatusCode.RESOURCE_EXHAUSTED}

_KNOBS = ("compute_ms", "ttft_ms", "itl_ms", "seed", "cache")


# ---------------------------------------------------------------- proto -> request dict

def _knobs(msg: pb.Knobs) -> dict[str, Any]:
    return {k: getattr(msg, k) for k in _KNOBS if msg.HasField(k)}


def embed_body(req: pb.EmbedRequest) -> dict[str, Any]:
    """The OpenAI embeddings dict this request means (only the fields it sets)."""
    body: dict[str, Any] = {"input": list(req.input), "wirebench": _knobs(req.wirebench)}
    if req.HasField("model"):
        body["model"] = req.model
    if req.HasField("dimensions"):
        body["dimensions"] = req.dimensions
    return body


def generate_body(req: pb.GenerateRequest) -> tuple[dict[str, Any], bool]:
    """(OpenAI chat or completion dict, chat?) for this request."""
    body: dict[str, Any] = {"stream": True, "wirebench": _knobs(req.wirebench),
                            "stream_options": {"include_usage": req.include_usage}}
    chat = not req.HasField("prompt")
    if chat:
        body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
    else:
        body["prompt"] = req.prompt
    if req.HasField("max_tokens"):
        body["max_tokens"] = req.max_tokens
    if req.HasField("model"):
        body["model"] = req.model
    return body, chat


def _parse(cls: type, raw: bytes) -> Any:
    try:
        return cls.FromString(raw)
    except DecodeError as exc:
        raise RequestError(f"malformed protobuf request: {exc}") from None


# ---------------------------------------------------------------- responses

def embed_response(params: EmbedParams, vectors: np.ndarray) -> bytes:
    """A serialized EmbedResponse, built as its `bytes` twin (no per-float work)."""
    tokens = sum(count_tokens(t) for t in params.inputs)
    rows = [pb.EmbeddingRaw(values=v.tobytes()) for v in vectors.astype("<f4", copy=False)]
    return pb.EmbedResponseRaw(data=rows, model=params.model,
                               usage=pb.Usage(prompt_tokens=tokens,
                                              total_tokens=tokens)).SerializeToString()


def token_message(params: GenerateParams, ev: TokenEvent) -> bytes:
    """A serialized Token; the last one carries usage when the request asked for it."""
    token = pb.Token(index=ev.index, text=ev.text, emit_ns=ev.emit_ns)
    if params.include_usage and ev.index == params.max_tokens - 1:
        token.usage.prompt_tokens = params.prompt_tokens
        token.usage.completion_tokens = params.max_tokens
        token.usage.total_tokens = params.prompt_tokens + params.max_tokens
    return token.SerializeToString()


def _server_time(t0_ns: int) -> tuple[tuple[str, str]]:
    return (("server-time-us", f"{(now_ns() - t0_ns) / 1e3:.3f}"),)


def _stream_trailers(t0_ns: int, context: grpc.aio.ServicerContext) -> tuple[tuple[str, str], ...]:
    # The peer address the server saw ("ipv4:169.254.77.1:43210"): grpc gives a client
    # no way to learn its own channel's local port, which the network lab needs to
    # match a stream to its packets.
    return _server_time(t0_ns) + (("peer", context.peer() or ""),)


# ---------------------------------------------------------------- the service

class InferenceService:
    def __init__(self, opts: ServerOptions, model: Model) -> None:
        self.limits = opts.limits
        self.model = model
        self.stats = model.stats
        self.bearer = None if opts.api_key is None else f"Bearer {opts.api_key}"

    def _check_auth(self, context: grpc.aio.ServicerContext) -> None:
        if self.bearer is None:
            return
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                if hmac.compare_digest(value.encode(), self.bearer.encode()):
                    return
                raise RequestError("invalid API key in 'authorization' metadata", status=401)
        raise RequestError("missing 'authorization: Bearer <key>' metadata", status=401)

    async def _refuse(self, context: grpc.aio.ServicerContext, exc: RequestError,
                      t0_ns: int) -> NoReturn:
        self.stats.errors += 1
        await context.abort(_STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT),
                            exc.message, _server_time(t0_ns))

    async def embed(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        t0 = now_ns()
        self.stats.requests += 1
        try:
            self._check_auth(context)
            params = parse_embed_request(embed_body(_parse(pb.EmbedRequest, raw)), self.limits)
        except RequestError as exc:
            await self._refuse(context, exc, t0)
        out = await self.model.embed_encoded(params, t0, "proto", embed_response)
        context.set_trailing_metadata(_server_time(t0))
        return out

    async def generate(self, raw: bytes, context: grpc.aio.ServicerContext) -> None:
        t0 = now_ns()
        self.stats.requests += 1
        try:
            self._check_auth(context)
            body, chat = generate_body(_parse(pb.GenerateRequest, raw))
            params = parse_generate_request(body, chat=chat, limits=self.limits)
        except RequestError as exc:
            await self._refuse(context, exc, t0)
        # A client cancel raises CancelledError here; aclosing closes the generator at
        # once, so Model.stream counts the stream cancelled and generates no more.
        async with contextlib.aclosing(self.model.stream(params, t0)) as events:
            async for ev in events:
                await context.write(token_message(params, ev))
        context.set_trailing_metadata(_stream_trailers(t0, context))

    async def stats_rpc(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # Uncounted, like HTTP /health; behind the key when one is set (liveness for
        # probes is the standard health service, open to all).
        try:
            self._check_auth(context)
        except RequestError as exc:
            self.stats.errors -= 1          # _refuse counts it; a probe must not perturb
            await self._refuse(context, exc, now_ns())
        return pb.StatsResponse(counters=self.stats.as_dict()).SerializeToString()

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {"Embed": grpc.unary_unary_rpc_method_handler(self.embed),
                "Generate": grpc.unary_stream_rpc_method_handler(self.generate),
                "Stats": grpc.unary_unary_rpc_method_handler(self.stats_rpc)}


# ---------------------------------------------------------------- serve

def server_options(opts: ServerOptions) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", opts.limits.max_body_bytes),
        ("grpc.max_send_message_length", -1),   # a big batch answer may exceed 4 MB
        ("grpc.so_reuseport", 0),               # never share a port with another server
    ]


async def serve(opts: ServerOptions, ready: Callable[[dict], None]) -> None:
    """Serve until cancelled, then stop with a short grace for calls in flight."""
    service = InferenceService(opts, Model())
    server = grpc.aio.server(options=server_options(opts))
    handlers = service.handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    await _add_ecosystem_services(server)
    port = server.add_insecure_port(f"{_host(opts.host)}:{opts.port}")   # raises if it can't bind
    await server.start()
    try:
        ready({"port": port})
        # Not server.wait_for_termination(): cancelling it cancels grpc's own shutdown
        # future, and stop() then drops calls in flight instead of granting the grace.
        await asyncio.get_running_loop().create_future()
    finally:
        await server.stop(STOP_GRACE_S)


async def _add_ecosystem_services(server: grpc.aio.Server) -> None:
    """The standard health service (Kubernetes probes, grpc_health_probe) and server
    reflection (grpcurl, grpcui: callable without the .proto file). Neither needs the
    API key: a probe carries none, and both tell only what the .proto already says."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1.health import aio as health_aio
    from grpc_reflection.v1alpha import reflection

    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", SERVICE):      # "" is the whole server
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host   # IPv6 literals need brackets
