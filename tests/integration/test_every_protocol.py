"""Every protocol id, real servers, real sockets: same input, same bytes, same tokens."""

from __future__ import annotations

import asyncio

import pytest

from clients import open_client
from clients.base import Target
from base.protocols import PROTOCOLS, STREAMING, UNARY
from servers import core

EMBED = {"input": ["the quick brown fox", "jumps over", "the lazy dog"], "dimensions": 1536,
         "model": "wirebench-embed-1", "encoding_format": "base64",
         "wirebench": {"seed": 7}}
CHAT = {"messages": [{"role": "user", "content": "tell me about networks"}],
        "max_tokens": 24, "stream": True, "stream_options": {"include_usage": True},
        "wirebench": {"ttft_ms": 5, "itl_ms": 2, "seed": 3}}


def target(servers, tls_files, protocol: str) -> Target:
    srv = servers.start(PROTOCOLS[protocol].server)
    return Target(port=srv.port, ca=tls_files.ca)


@pytest.mark.parametrize("protocol", UNARY)
async def test_unary_protocols_return_identical_float32(servers, tls_files, protocol):
    expected = core.embed_batch(core.parse_embed_request(EMBED)).tobytes()
    async with open_client(protocol, target(servers, tls_files, protocol)) as client:
        results = await asyncio.gather(*(client.embed(EMBED) for _ in range(4)))
    for r in results:
        assert r.vectors.dtype.str == "<f4" and r.vectors.shape == (3, 1536)
        assert r.vectors.tobytes() == expected
        assert r.server_time_us is not None and r.server_time_us > 0
        assert r.payload_up > 0 and r.payload_down >= 3 * 1536 * 4
        assert r.t_start_ns < r.t_first_byte_ns <= r.t_received_ns <= r.t_decoded_ns


@pytest.mark.parametrize("protocol", STREAMING)
async def test_streaming_protocols_deliver_the_same_tokens(servers, tls_files, protocol):
    params = core.parse_generate_request(CHAT, chat=True)
    async with open_client(protocol, target(servers, tls_files, protocol)) as client:
        results = await asyncio.gather(*(client.generate(CHAT) for _ in range(3)))
    for r in results:
        assert [t.index for t in r.tokens] == list(range(24))
        assert [t.text for t in r.tokens] == core.tokens_for(params)
        emits = [t.emit_ns for t in r.tokens]
        gaps = [b - a for a, b in zip(emits, emits[1:])]
        assert all(g > 0 for g in gaps)
        # Never early, on the one shared clock: the server cannot have started before
        # the client sent, so token k is due no sooner than start + ttft + k * itl.
        # (How close to its slot a token is depends on load: tests/integration/test_schedule.py.)
        assert all(e >= r.t_start_ns + 5_000_000 + k * 2_000_000
                   for k, e in enumerate(emits)), emits
        assert all(t.recv_ns >= t.emit_ns for t in r.tokens)
        assert r.server_time_us is not None
        assert r.ttft_ns >= 5_000_000


def test_every_protocol_id_is_covered():
    assert set(UNARY) | set(STREAMING) == set(PROTOCOLS)
    assert len(PROTOCOLS) == 10
