"""What the gRPC unary and streaming clients share: channels, request building, errors.

gRPC runs only over HTTP/2 (grpc core has no HTTP/1.1 path), so no fallback can
happen and there is no negotiated protocol to check: FallbackError never applies.
Channels are cleartext (h2c), as servers.grpc_server serves; `Target.tls` is ignored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio

from protos import inference_pb2 as pb

from clients.base import (ClientError, ConnectError, ConnectionLost, PhaseTimeout, Refused, ServerError,
                   Target, clock_ns)
from clients.transport.phases import ConnectStamps, HostResolver

EMBED = "/wirebench.v1.Inference/Embed"
GENERATE = "/wirebench.v1.Inference/Generate"
STATS = "/wirebench.v1.Inference/Stats"

_KNOBS = frozenset(("compute_ms", "ttft_ms", "itl_ms", "seed", "cache"))

CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", -1),   # big batches exceed the 4 MB default
    ("grpc.max_send_message_length", -1),
    # Each channel owns its connections: without this, channels in one process with
    # the same target share subchannels, and reuse=False would reuse a live connection.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.enable_http_proxy", 0),             # an http_proxy variable must not reroute
    ("grpc.enable_retries", 0),                # every failure is seen, never retried
)


# ---------------------------------------------------------------- channels

def open_channel(target: Target, address: str | None = None) -> grpc.aio.Channel:
    host = address or target.host
    host = f"[{host}]" if ":" in host else host
    return grpc.aio.insecure_channel(f"{host}:{target.port}", options=CHANNEL_OPTIONS)


async def connect(channel: grpc.aio.Channel, target: Target) -> None:
    """Wait until the channel is READY; fail at the first TRANSIENT_FAILURE, with what
    grpc-core says went wrong (refused: Refused), or PhaseTimeout past
    target.connect_timeout_s (a silent peer keeps the channel CONNECTING).

    channel_ready() would retry with backoff forever against a port nobody serves.
    """
    where = f"{target.host}:{target.port}"
    try:
        async with asyncio.timeout(target.connect_timeout_s):
            state = channel.get_state(try_to_connect=True)
            while state is not grpc.ChannelConnectivity.READY:
                if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                             grpc.ChannelConnectivity.SHUTDOWN):
                    raise await _failure(channel, where, state)
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
    except TimeoutError:
        raise PhaseTimeout(f"gRPC connection to {where} timed out after "
                           f"{target.connect_timeout_s:g} s (channel still connecting: "
                           "no answer to TCP or HTTP/2 setup)") from None


async def _failure(channel: grpc.aio.Channel, where: str,
                   state: grpc.ChannelConnectivity) -> ConnectError:
    """The channel's state carries no reason; a fail-fast call on it does (error path
    only): grpc-core's last connect error, e.g. '...: Connection refused'."""
    detail = ""
    try:
        await channel.unary_unary(STATS)(b"", timeout=1.0)
    except grpc.aio.AioRpcError as exc:
        detail = exc.details() or ""
    except Exception:   # noqa: BLE001 (only a better message is lost)
        pass
    message = f"gRPC connection to {where} failed (channel {state.name}): {detail or '?'}"
    return (Refused if "connection refused" in detail.lower() else ConnectError)(message)


class Connections:
    """The connection policy: one lazily connected channel (reuse) or one per call.

    A channel's connect is timed as its "tcp" phase: grpc-core reports READY once the
    TCP connection is up and its HTTP/2 handshake done (cleartext: no TLS phase)."""

    def __init__(self, target: Target, reuse: bool) -> None:
        self.target = target
        self.reuse = reuse
        self.hosts = HostResolver(target)
        self._shared: grpc.aio.Channel | None = None
        self._ready: asyncio.Future | None = None   # the shared channel's connect
        self.stamps: dict[grpc.aio.Channel, ConnectStamps] = {}

    async def acquire(self) -> tuple[grpc.aio.Channel, bool, int | None]:
        """(channel, new connection?, connect ns when new); `stamps[channel]` says how
        opening it went."""
        if not self.reuse:
            channel, stamps = await self._open()
            return channel, True, stamps.tcp - stamps.start
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._open(shared=True))
            # Shielded: concurrent first calls wait on this connect too, and must not
            # see it cancelled because the caller that started it was.
            channel, stamps = await asyncio.shield(self._ready)
            return channel, True, stamps.tcp - stamps.start
        if not self._ready.done():
            await asyncio.shield(self._ready)
        return self._shared, False, None

    async def _open(self, shared: bool = False) -> tuple[grpc.aio.Channel, ConnectStamps]:
        stamps = ConnectStamps(clock_ns())
        channel = None
        try:
            channel = open_channel(self.target, await self.hosts.address(stamps))
            if shared:
                self._shared = channel
            await connect(channel, self.target)
        except BaseException:
            if shared:
                self._shared = self._ready = None   # the next call tries afresh
            if channel is not None:
                await channel.close()
            raise
        stamps.tcp = clock_ns()
        self.stamps[channel] = stamps
        return channel, stamps

    async def release(self, channel: grpc.aio.Channel) -> None:
        if not self.reuse:
            self.stamps.pop(channel, None)
            await channel.close()

    async def close(self) -> None:
        channel, self._shared, self._ready = self._shared, None, None
        self.stamps.clear()
        if channel is not None:
            await channel.close()


# ---------------------------------------------------------------- requests

def _knobs(request: dict[str, Any]) -> pb.Knobs:
    knobs = request.get("wirebench") or {}
    if not isinstance(knobs, dict):
        raise ClientError("'wirebench' must be an object of benchmark knobs")
    return pb.Knobs(**{k: v for k, v in knobs.items() if k in _KNOBS})


def _build(build, request: dict[str, Any]) -> bytes:
    """Serialized request; values protobuf cannot carry fail here, named."""
    try:
        return build(request).SerializeToString()
    except (TypeError, ValueError, KeyError) as exc:
        raise ClientError(f"request cannot be expressed in protobuf: {exc}") from exc


def _embed_message(request: dict[str, Any]) -> pb.EmbedRequest:
    raw = request.get("input", ())
    msg = pb.EmbedRequest(input=[raw] if isinstance(raw, str) else raw,
                          wirebench=_knobs(request))
    if "model" in request:
        msg.model = request["model"]
    if "dimensions" in request:
        msg.dimensions = request["dimensions"]
    return msg


def _content(content: Any) -> Any:
    # Content parts keep their text, joined as servers.core does for JSON.
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content


def _generate_message(request: dict[str, Any]) -> pb.GenerateRequest:
    options = request.get("stream_options") or {}
    msg = pb.GenerateRequest(wirebench=_knobs(request),
                             include_usage=bool(options.get("include_usage", False)))
    if "prompt" in request:
        prompt = request["prompt"]
        msg.prompt = prompt[0] if isinstance(prompt, list) and len(prompt) == 1 else prompt
    else:
        msg.messages.extend(pb.ChatMessage(role=m["role"], content=_content(m.get("content", "")))
                            for m in request.get("messages") or ())
    max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
    if max_tokens is not None:
        msg.max_tokens = max_tokens
    if "model" in request:
        msg.model = request["model"]
    return msg


def embed_request(request: dict[str, Any]) -> bytes:
    """An OpenAI embeddings dict as a serialized EmbedRequest (encoding_format ignored:
    gRPC always carries float32)."""
    return _build(_embed_message, request)


def generate_request(request: dict[str, Any]) -> bytes:
    """An OpenAI chat (or completion, with `prompt`) dict as a serialized GenerateRequest."""
    return _build(_generate_message, request)


def auth_metadata(target: Target) -> tuple[tuple[str, str], ...] | None:
    return None if target.api_key is None else (("authorization", f"Bearer {target.api_key}"),)


# ---------------------------------------------------------------- responses

def server_time_us(metadata: Any) -> float | None:
    """`server-time-us` from trailing metadata."""
    for key, value in metadata or ():
        if key == "server-time-us":
            return float(value)
    return None


def peer_port(metadata: Any) -> int | None:
    """The client's port as the server saw it (`peer` trailer, "ipv4:host:port")."""
    for key, value in metadata or ():
        if key == "peer":
            port = value.rsplit(":", 1)[-1]
            return int(port) if port.isdigit() else None
    return None


def map_error(exc: grpc.aio.AioRpcError, responded: bool) -> ClientError:
    """UNAVAILABLE before any response is a connect failure, after one a lost
    connection; every other status is the server's answer."""
    if exc.code() is grpc.StatusCode.UNAVAILABLE:
        cls = ConnectionLost if responded else ConnectError
        if not responded and "connection refused" in (exc.details() or "").lower():
            cls = Refused
        return cls(f"gRPC UNAVAILABLE: {exc.details()}")
    return ServerError(exc.code().name, exc.details() or "", exc)


async def server_stats(target: Target) -> dict[str, int]:
    """The server's ServerStats counters, over a channel of its own."""
    async with open_channel(target) as channel:
        raw = await channel.unary_unary(STATS)(b"")
    return dict(pb.StatsResponse.FromString(raw).counters)
