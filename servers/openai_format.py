"""OpenAI-shaped JSON bodies for the fake model (shared by HTTP/SSE and WebSocket).

Pure functions from core results to bytes. Embedding floats are serialized by
orjson straight from float32 (shortest round-trip repr), so the client decodes the
exact float32 bits that gRPC and base64 carry.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import numpy as np
import orjson

from servers.core import (EMBED_MODEL_ID, MODEL_ID, EmbedParams, GenerateParams, RequestError, Usage,
                   count_tokens, vector_b64)

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_NUMPY)


def embedding_response(params: EmbedParams, vectors: np.ndarray) -> bytes:
    if params.encoding_format == "base64":
        data = [{"object": "embedding", "index": i, "embedding": vector_b64(v)}
                for i, v in enumerate(vectors)]
    else:
        data = [{"object": "embedding", "index": i, "embedding": v}
                for i, v in enumerate(vectors)]
    tokens = sum(count_tokens(t) for t in params.inputs)
    return dumps({"object": "list", "data": data, "model": params.model,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


_CREATED = 1_700_000_000


def _card(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "wirebench",
            "root": model_id, "parent": None}


def models_response() -> bytes:
    return dumps({"object": "list", "data": [_card(m) for m in (MODEL_ID, EMBED_MODEL_ID)]})


def model_card(model_id: str) -> bytes:
    """One model (GET /v1/models/{id}); an unknown id is OpenAI's 404 model_not_found."""
    if model_id not in (MODEL_ID, EMBED_MODEL_ID):
        raise RequestError(f"The model '{model_id}' does not exist", status=404,
                           param="model", code="model_not_found")
    return dumps(_card(model_id))


class StreamFormatter:
    """Builds one stream's chunks: one id for all, role in the first content chunk."""

    def __init__(self, params: GenerateParams) -> None:
        self.params = params
        prefix = "chatcmpl-" if params.chat else "cmpl-"
        self.id = prefix + secrets.token_hex(12)
        self.created = int(time.time())
        self.object = "chat.completion.chunk" if params.chat else "text_completion"

    def _chunk(self, choices: list, extra: dict | None = None, usage: Any = None) -> dict:
        chunk = {"id": self.id, "object": self.object, "created": self.created,
                 "model": self.params.model, "choices": choices}
        if usage is not None:
            chunk["usage"] = usage
        elif self.params.include_usage:
            chunk["usage"] = None   # OpenAI sends usage: null on every chunk but the last
        if extra:
            chunk["wirebench"] = extra
        return chunk

    def token(self, index: int, text: str, emit_ns: int) -> dict:
        if self.params.chat:
            delta = {"role": "assistant", "content": text} if index == 0 else {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None}
        return self._chunk([choice], {"index": index, "emit_ns": emit_ns})

    def finish(self, reason: str, server_time_us: float) -> dict:
        if self.params.chat:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
        return self._chunk([choice], {"server_time_us": server_time_us})

    def usage(self, usage: Usage) -> dict:
        return self._chunk([], usage=usage.as_dict())

    def complete(self, text: str, usage: Usage, server_time_us: float) -> bytes:
        """A non-streaming response holding the whole generation."""
        if self.params.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": "length"}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
            obj = "text_completion"
        return dumps({"id": self.id, "object": obj, "created": self.created,
                      "model": self.params.model, "choices": [choice],
                      "usage": usage.as_dict(),
                      "wirebench": {"server_time_us": server_time_us}})
