"""`ws`: one embedding request and its response as messages on a WebSocket."""

from __future__ import annotations

from typing import Any

from clients.base import ProtocolViolation, UnaryResult, clock_ns
from clients.openai_codec import embedding_vectors
from clients.transport.phases import curl_style
from clients.ws.common import WsClientBase


class WsClient(WsClientBase):
    protocol = "ws"
    streaming = False

    async def embed(self, request: dict[str, Any]) -> UnaryResult:
        t_start = clock_ns()
        conn, connect_ns = await self._acquire()
        try:
            async with conn.exchange(b"embed", request) as ex:
                t_received, msg = await ex.receive()
            if msg["type"] != "embedding":
                raise ProtocolViolation(f"expected an embedding message, got {msg['type']!r}")
            vectors = embedding_vectors(msg["body"])
            t_decoded = clock_ns()
        finally:
            await self._release(conn)
        opened = conn.stamps if connect_ns is not None else None
        return UnaryResult(vectors, t_start, ex.t_first_ns, t_received, t_decoded,
                           ex.payload_up, ex.payload_down, msg.get("server_time_us"),
                           connect_ns is not None, connect_ns,
                           extra={"phases": curl_style(t_start, opened, ex.t_sent_ns,
                                                       ex.t_first_ns, t_received)})


CLIENT = WsClient
