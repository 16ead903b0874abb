"""Protocol `grpc-stream`: server-streaming Generate over grpc.aio.

Each message is stamped on receipt and kept as bytes; tokens are parsed after the
stream ends, so parsing never delays the receive stamp of the next message.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import DecodeError

from protos import inference_pb2 as pb

from clients.base import Client, ProtocolViolation, StreamResult, StreamToken, Target, clock_ns
from clients.grpc.common import (
    GENERATE,
    Connections,
    auth_metadata,
    generate_request,
    map_error,
    peer_port,
    server_time_us,
)
from clients.transport.phases import curl_style


def decode_tokens(frames: list[tuple[bytes, int]]) -> tuple[list[StreamToken], dict | None]:
    """Tokens from (message bytes, recv_ns), and the usage the last one may carry."""
    tokens, usage = [], None
    try:
        for raw, recv_ns in frames:
            msg = pb.Token.FromString(raw)
            tokens.append(StreamToken(msg.index, msg.text, msg.emit_ns, recv_ns))
            if msg.HasField("usage"):
                usage = {"prompt_tokens": msg.usage.prompt_tokens,
                         "completion_tokens": msg.usage.completion_tokens,
                         "total_tokens": msg.usage.total_tokens}
    except DecodeError as exc:
        raise ProtocolViolation(f"malformed Token message: {exc}") from exc
    return tokens, usage


class GrpcStreamClient(Client):
    protocol = "grpc-stream"
    streaming = True

    def __init__(self, target: Target, *, reuse: bool = True) -> None:
        super().__init__(target, reuse=reuse)
        self._connections = Connections(target, reuse)
        self._metadata = auth_metadata(target)

    async def generate(self, request: dict[str, Any]) -> StreamResult:
        t_start = clock_ns()
        payload = generate_request(request)
        channel, new, connect_ns = await self._connections.acquire()
        opened = self._connections.stamps.get(channel) if new else None
        frames: list[tuple[bytes, int]] = []
        try:
            call = channel.unary_stream(GENERATE, _registered_method=True)(
                payload, metadata=self._metadata)
            t_sent = clock_ns()     # handed to grpc-core; it writes from its own thread
            await call.initial_metadata()   # the server sends it with the first token
            t_first_byte = clock_ns()
            async for raw in call:
                frames.append((raw, clock_ns()))
            t_end = clock_ns()
            trailers = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            raise map_error(exc, responded=bool(frames)) from exc
        finally:
            await self._connections.release(channel)
        tokens, usage = decode_tokens(frames)
        return StreamResult(tokens, t_start, t_first_byte, t_end, len(payload),
                            sum(len(raw) for raw, _ in frames), server_time_us(trailers),
                            usage, new, connect_ns,
                            extra={"local_port": peer_port(trailers),
                                   "phases": curl_style(t_start, opened, t_sent, t_first_byte,
                                                        t_end)})

    async def close(self) -> None:
        await self._connections.close()


CLIENT = GrpcStreamClient
