"""`ws-stream`: a chat generation streamed as one WebSocket message per token."""

from __future__ import annotations

from typing import Any

from clients.base import ProtocolViolation, StreamResult, StreamToken, clock_ns
from clients.transport.phases import curl_style
from clients.ws.common import WsClientBase


class WsStreamClient(WsClientBase):
    protocol = "ws-stream"
    streaming = True

    async def generate(self, request: dict[str, Any]) -> StreamResult:
        t_start = clock_ns()
        conn, connect_ns = await self._acquire()
        tokens: list[StreamToken] = []
        try:
            async with conn.exchange(b"generate", request) as ex:
                while True:
                    recv_ns, msg = await ex.receive()
                    if msg["type"] != "token":
                        break
                    tokens.append(StreamToken(msg["index"], msg["text"], msg["emit_ns"],
                                              recv_ns))
            if msg["type"] != "done":
                raise ProtocolViolation(f"expected a token or done message, got "
                                        f"{msg['type']!r}")
        finally:
            await self._release(conn)
        opened = conn.stamps if connect_ns is not None else None
        return StreamResult(tokens, t_start, ex.t_first_ns, recv_ns, ex.payload_up,
                            ex.payload_down, msg.get("server_time_us"), msg.get("usage"),
                            connect_ns is not None, connect_ns,
                            extra={"local_port": conn.local_port,
                                   "phases": curl_style(t_start, opened, ex.t_sent_ns,
                                                        ex.t_first_ns, recv_ns)})


CLIENT = WsStreamClient
