"""Protocol `grpc`: unary Embed over grpc.aio, vectors decoded with np.frombuffer.

The call is registered with identity (de)serializers: the client serializes the
request and parses the response itself, so payload sizes are exact and decoding is
timed on its own. The response is parsed as EmbedResponseRaw, the wire twin of
EmbedResponse whose vectors are `bytes` (protos/inference.proto says why).

First byte: grpc.aio runs a unary call as one batch, so its initial metadata,
message and status reach Python together; t_first_byte_ns is therefore the time the
response was received, and a transfer phase cannot be told apart for this client.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from protos import inference_pb2 as pb

from clients.base import Client, ProtocolViolation, Target, UnaryResult, clock_ns
from clients.grpc.common import (
    EMBED,
    Connections,
    auth_metadata,
    embed_request,
    map_error,
    server_time_us,
)
from clients.transport.phases import curl_style


def decode_vectors(raw: bytes) -> np.ndarray:
    """(n, dims) little-endian float32 from a serialized EmbedResponse (read-only)."""
    try:
        rows = pb.EmbedResponseRaw.FromString(raw).data
        return np.frombuffer(b"".join(r.values for r in rows), dtype="<f4").reshape(len(rows), -1)
    except (DecodeError, ValueError) as exc:
        raise ProtocolViolation(f"malformed EmbedResponse: {exc}") from exc


class GrpcUnaryClient(Client):
    protocol = "grpc"
    streaming = False

    def __init__(self, target: Target, *, reuse: bool = True) -> None:
        super().__init__(target, reuse=reuse)
        self._connections = Connections(target, reuse)
        self._metadata = auth_metadata(target)

    async def embed(self, request: dict[str, Any]) -> UnaryResult:
        t_start = clock_ns()
        payload = embed_request(request)
        channel, new, connect_ns = await self._connections.acquire()
        opened = self._connections.stamps.get(channel) if new else None
        try:
            call = channel.unary_unary(EMBED, _registered_method=True)(
                payload, metadata=self._metadata)
            t_sent = clock_ns()     # handed to grpc-core; it writes from its own thread
            raw = await call
            t_received = clock_ns()
            trailers = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            raise map_error(exc, responded=False) from exc
        finally:
            await self._connections.release(channel)
        vectors = decode_vectors(raw)
        return UnaryResult(vectors, t_start, t_received, t_received, clock_ns(),
                           len(payload), len(raw), server_time_us(trailers), new, connect_ns,
                           extra={"phases": curl_style(t_start, opened, t_sent, t_received,
                                                       t_received)})

    async def close(self) -> None:
        await self._connections.close()


CLIENT = GrpcUnaryClient
