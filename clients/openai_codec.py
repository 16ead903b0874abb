"""Decoding the OpenAI-shaped bodies the HTTP and WebSocket servers send."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from clients.base import ProtocolViolation, ServerError, StreamToken

try:        # pysimdjson: about a third of orjson + np.array's cost on a JSON float batch
    import simdjson
except ImportError:                         # pragma: no cover (a declared dependency)
    simdjson = None

# Bodies from this size up take the simdjson path (measured: even at ~1 KB, one 64-dim
# vector, it is faster; at 237 B, one 8-dim vector, orjson is). 8 x 1536 floats, ~154 KB:
# 300 us instead of 770.
SIMDJSON_MIN_BYTES = 1024
_PARSER = simdjson.Parser() if simdjson is not None else None


def embedding_vectors(body: dict[str, Any]) -> np.ndarray:
    """(n, dims) little-endian float32 from an embeddings response, float or base64."""
    try:
        data = body["data"]
        if len(data) == 1:              # the common small case, in a few operations
            item = data[0]
            emb = item["embedding"]
            if item["index"] == 0 and emb.__class__ is list:
                return np.array([emb], dtype="<f4")
        embeddings = []
        ordered = floats = True
        for i, item in enumerate(data):
            if item["index"] != i:
                ordered = False
            emb = item["embedding"]
            if isinstance(emb, str):
                floats = False
            embeddings.append(emb)
        if not ordered:
            data = sorted(data, key=lambda d: d["index"])
            embeddings = [item["embedding"] for item in data]
        if embeddings and floats:
            # JSON floats: one conversion for the whole batch. Per-row asarray, astype
            # and stack cost ~27 us per request even for one 8-dim vector (measured in
            # a request loop; ~6 us in a tight micro-benchmark); this costs ~9 us.
            return np.array(embeddings, dtype="<f4")
        rows = []
        for emb in embeddings:
            if isinstance(emb, str):
                rows.append(np.frombuffer(base64.b64decode(emb), dtype="<f4"))
            else:
                rows.append(np.asarray(emb, dtype=np.float64).astype("<f4"))
        return np.stack(rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolViolation(f"malformed embeddings response: {exc}") from exc


def decode_embeddings(raw: bytes) -> np.ndarray:
    """(n, dims) little-endian float32 from an embeddings response body (bytes).

    Large JSON-float bodies of the usual shape go through simdjson (parsed in C, each
    vector exported as one float64 buffer, never as Python floats); anything else, or
    anything unusual, through orjson and `embedding_vectors`, which validates and
    words the errors. Both give the same float32 values: each parses the decimal text
    to the nearest float64 and numpy rounds that to float32.
    """
    if len(raw) >= SIMDJSON_MIN_BYTES and _PARSER is not None:
        vectors = _simd_vectors(raw)
        if vectors is not None:
            return vectors
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolViolation(f"embeddings response is not JSON: {exc}") from None
    return embedding_vectors(body)


def _simd_vectors(raw: bytes) -> np.ndarray | None:
    """The fast path's answer, or None to leave the body to the orjson path.

    Accepted only when it is certain to mean what the orjson path would return: a
    `data` list whose items carry `index` == their position and an `embedding` array
    of numbers, all of one length. simdjson's as_buffer flattens nested arrays, so a
    body with any array besides `data` and its n embeddings is refused: it then holds
    more than n + 1 '[' bytes (a '[' inside a string only adds to the count, which
    refuses a valid body, never accepts a wrong one). Strings (base64), booleans,
    nulls, a wrong index, ragged rows, invalid JSON: all refused here and handled, or
    reported, by the orjson path.
    """
    global _PARSER
    try:
        doc = _PARSER.parse(raw)        # type: ignore[union-attr]
    except RuntimeError:                # the parser's last document is still referenced
        _PARSER = simdjson.Parser()
        try:
            doc = _PARSER.parse(raw)
        except ValueError:
            return None
    except ValueError:                  # not JSON (the orjson path says so, in words)
        return None
    data = item = None
    try:
        data = doc["data"]
        n = len(data)
        if not n or _count_brackets(raw, n + 2) != n + 1:
            return None
        out = None
        for i in range(n):
            item = data[i]
            if item["index"] != i:
                return None             # out of order: the orjson path sorts
            row = np.frombuffer(item["embedding"].as_buffer(of_type="d"), dtype="<f8")
            if out is None:
                out = np.empty((n, row.size), dtype="<f4")
            elif row.size != out.shape[1]:
                return None             # ragged
            out[i] = row                # float64 -> float32, rounded to nearest
        return out
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None
    finally:
        # The parser refuses the next document while any proxy into this one lives.
        doc = data = item = None        # noqa: F841


def _count_brackets(raw: bytes, limit: int) -> int:
    """How many '[' bytes raw holds, counting no further than `limit`: a find() chain
    (memchr) that jumps from one to the next, ~3 us on the 154 KB body where
    bytes.count, which looks at every byte, takes ~50."""
    count, i = 0, raw.find(b"[")
    while i >= 0 and count < limit:
        count += 1
        i = raw.find(b"[", i + 1)
    return count


def error_from_body(status: int | str, raw: bytes) -> ServerError:
    """A ServerError carrying the OpenAI error message if the body has one."""
    try:
        body = orjson.loads(raw)
        message = body["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        body, message = None, raw[:200].decode("utf-8", "replace")
    return ServerError(status, message, body)


def parse_server_timing(value: str | bytes | None) -> float | None:
    """Microseconds from `Server-Timing: app;dur=<ms>` (the header's str or bytes)."""
    if not value:
        return None
    if isinstance(value, bytes):
        if value[:8] == b"app;dur=":      # the project's servers' exact form
            try:
                return float(value[8:]) * 1000.0
            except ValueError:            # more metrics or parameters: the general parse
                pass
        value = value.decode("latin-1")
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
