"""The fake model driven in time: simulated model time is awaited, never burned.

Adapters call `embed()` and iterate `stream()`; both sleep to absolute CLOCK_MONOTONIC
deadlines (base.clock), so server CPU measures the protocol and nothing else.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import AsyncIterator, Callable

import numpy as np

from base.clock import now_ns, sleep_until_ns
from servers.core import EmbedParams, GenerateParams, ServerStats, StreamPlan, TokenEvent, embed_batch


class Model:
    def __init__(self, stats: ServerStats | None = None, cache_size: int = 1024) -> None:
        self.stats = stats or ServerStats()
        self._encoded: OrderedDict[tuple, bytes] = OrderedDict()
        self._cache_size = cache_size

    async def embed(self, params: EmbedParams, t0_ns: int | None = None) -> np.ndarray:
        """Vectors after `compute_ms` per input, counted from t0 (request arrival)."""
        if params.compute_ms:
            t0 = now_ns() if t0_ns is None else t0_ns
            await sleep_until_ns(t0 + round(params.compute_ms * 1e6 * len(params.inputs)))
        return embed_batch(params)

    async def embed_encoded(self, params: EmbedParams, t0_ns: int, fmt: str,
                            encode: Callable[[EmbedParams, np.ndarray], bytes]) -> bytes:
        """The encoded response: made per request, or with `params.cache` taken from an
        LRU of encoded responses (the model time is awaited either way), so the two
        differ by what generating and encoding the vectors costs the server."""
        if not params.cache:
            return encode(params, await self.embed(params, t0_ns))
        key = (fmt, params)
        hit = self._encoded.get(key)
        if hit is not None:
            self._encoded.move_to_end(key)
            if params.compute_ms:
                await sleep_until_ns(t0_ns + round(params.compute_ms * 1e6 * len(params.inputs)))
            return hit
        payload = self._encoded[key] = encode(params, await self.embed(params, t0_ns))
        if len(self._encoded) > self._cache_size:
            self._encoded.popitem(last=False)
        return payload

    async def stream(self, params: GenerateParams,
                     t0_ns: int | None = None) -> AsyncIterator[TokenEvent]:
        """Tokens on the schedule t0 + ttft + k*itl, each stamped when it is released.

        Counts the stream as active until it ends; a consumer that stops early (client
        gone: the adapter cancels or closes this generator) counts as cancelled, and no
        further token is generated for it.
        """
        plan = StreamPlan(params, now_ns() if t0_ns is None else t0_ns)
        stats = self.stats
        stats.active_streams += 1
        finished = False
        try:
            for index, deadline, text in plan:
                await sleep_until_ns(deadline)
                stats.tokens_sent += 1
                yield TokenEvent(index, text, now_ns())
            finished = True
        finally:
            stats.active_streams -= 1
            if finished:
                stats.completed_streams += 1
            else:
                stats.cancelled_streams += 1
