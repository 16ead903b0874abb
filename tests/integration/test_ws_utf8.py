"""Invalid UTF-8 in a WebSocket text frame closes the connection with 1007 (RFC 6455
section 8.1), while valid requests in text or binary frames are served as before."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

REQUEST = {"id": 1, "type": "embed", "body": {"input": ["a"], "dimensions": 4}}


@pytest.mark.parametrize("text", [True, False])
async def test_valid_requests_in_text_or_binary_frames(servers, text):
    srv = servers.start("ws")
    async with connect(f"ws://127.0.0.1:{srv.port}", compression=None) as ws:
        await ws.send(json.dumps(REQUEST).encode(), text=text)
        reply = json.loads(await ws.recv())
        assert reply["id"] == 1 and reply["type"] == "embedding"


async def test_invalid_utf8_text_frame_closes_with_1007(servers):
    srv = servers.start("ws")
    async with connect(f"ws://127.0.0.1:{srv.port}", compression=None) as ws:
        await ws.send(b'{"id": 1, "type": "embed", "x": "\xff\xfe"}', text=True)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
