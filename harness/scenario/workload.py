"""Requests a scenario's workload sends: the same dicts for every protocol.

Inputs are deterministic from the seed, cycled from a pool of `distinct_inputs` texts,
so every protocol sends exactly the same sequence of requests.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

_WORDS = ("network latency token vector stream packet model query embedding server "
          "client cache window frame header socket route batch search answer").split()


def _texts(count: int, words: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [" ".join(rnd.choices(_WORDS, k=words)) for _ in range(count)]


def embed_requests(workload: Any, seed: int, model: str = "wirebench-embed-1"
                   ) -> Iterator[dict[str, Any]]:
    """Endless embeddings requests: batch k takes the next batch_size pool texts."""
    pool = _texts(workload.distinct_inputs, workload.input_words, seed)
    knobs = {"compute_ms": workload.compute_ms, "seed": seed}
    if workload.server_cache:
        knobs["cache"] = True   # the server reuses its encoded response: no encode cost
    k = 0
    while True:
        inputs = [pool[(k + j) % len(pool)] for j in range(workload.batch_size)]
        k += workload.batch_size
        yield {"model": model, "input": inputs, "dimensions": workload.dimensions,
               "encoding_format": workload.encoding, "wirebench": knobs}


def stream_request(workload: Any, seed: int, model: str = "wirebench-fake-1") -> dict[str, Any]:
    """The one streamed chat request of a stream workload (identical every time)."""
    prompt = " ".join(_texts(1, workload.prompt_tokens, seed))
    return {"model": model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": workload.max_tokens, "stream": True,
            "stream_options": {"include_usage": True},
            "wirebench": {"ttft_ms": workload.ttft_ms, "itl_ms": workload.itl_ms, "seed": seed}}
