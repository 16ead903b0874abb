"""Decoding the OpenAI-shaped bodies the HTTP and WebSocket servers send."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from .base import ProtocolViolation, ServerError, StreamToken


def embedding_vectors(body: dict[str, Any]) -> np.ndarray:
    """(n, dims) little-endian float32 from an embeddings response, float or base64."""
    try:
        data = body["data"]
        if any(item["index"] != i for i, item in enumerate(data)):
            data = sorted(data, key=lambda d: d["index"])
        embeddings = [item["embedding"] for item in data]
        if embeddings and not any(isinstance(e, str) for e in embeddings):
            # JSON floats: one conversion for the whole batch. Per-row asarray, astype
            # and stack cost ~27 us per request even for one 8-dim vector (measured in
            # a request loop; ~6 us in a tight micro-benchmark); this costs ~9 us.
            return np.array(embeddings, dtype="<f4")
        rows = []
        for item in data:
            emb = item["embedding"]
            if isinstance(emb, str):
                rows.append(np.frombuffer(base64.b64decode(emb), dtype="<f4"))
            else:
                rows.append(np.asarray(emb, dtype=np.float64).astype("<f4"))
        return np.stack(rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolViolation(f"malformed embeddings response: {exc}") from exc


def error_from_body(status: int | str, raw: bytes) -> ServerError:
    """A ServerError carrying the OpenAI error message if the body has one."""
    try:
        body = orjson.loads(raw)
        message = body["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        body, message = None, raw[:200].decode("utf-8", "replace")
    return ServerError(status, message, body)


def parse_server_timing(value: str | None) -> float | None:
    """Microseconds from `Server-Timing: app;dur=<ms>`."""
    if not value:
        return None
    for metric in value.split(","):
        parts = [p.strip() for p in metric.split(";")]
        if parts[0] == "app":
            for p in parts[1:]:
                if p.startswith("dur="):
                    return float(p[4:]) * 1000.0
    return None


class ChunkReader:
    """Turns decoded stream chunks (dicts) into tokens, usage and the server time."""

    def __init__(self) -> None:
        self.tokens: list[StreamToken] = []
        self.usage: dict[str, int] | None = None
        self.server_time_us: float | None = None
        self.done = False

    def add(self, chunk: dict[str, Any], recv_ns: int) -> None:
        if "error" in chunk:
            err = chunk["error"]
            raise ServerError(err.get("code") or "stream_error", err.get("message", str(err)), chunk)
        ext = chunk.get("wirebench") or {}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if "server_time_us" in ext:
            self.server_time_us = ext["server_time_us"]
        if "emit_ns" in ext:
            index, emit_ns = ext["index"], ext["emit_ns"]
        else:   # a server that does not stamp: count content chunks ourselves
            if not chunk.get("choices"):
                return
            index, emit_ns = len(self.tokens), None
        choice = chunk["choices"][0]
        text = (choice["delta"].get("content") or "") if "delta" in choice else choice.get("text", "")
        if emit_ns is None and not text:
            return      # role-only or finish chunks of an unstamped stream
        self.tokens.append(StreamToken(index, text, emit_ns, recv_ns))
