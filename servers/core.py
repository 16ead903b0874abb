"""The fake model: embeddings and token streams, pure and deterministic (no I/O).

Every protocol adapter parses its wire format into the plain dicts below, calls
`parse_embed_request` / `parse_generate_request` (one validation for all protocols,
so a bad request means the same thing everywhere), and serializes what comes back.

Benchmark knobs ride in an extension object `wirebench` inside the request
(`compute_ms`, `ttft_ms`, `itl_ms`, `seed`) so OpenAI clients can send them with
`extra_body` and every protocol carries the same request.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

MODEL_ID = "wirebench-fake-1"
EMBED_MODEL_ID = "wirebench-embed-1"

# 256 short words; tokens are drawn from them so token text is realistic in size.
_VOCAB = (
    "the of and to in is that for it as was with be by on not he this are or his from "
    "at which but have an they you were her she there one all we can their has been if "
    "more when will would who so no out up into do any your what time some could them "
    "other than then now only its also two may first like new over such these our after "
    "most well made way just where many years used those very must through back good "
    "world down even state because each still own work between life being same both "
    "under never day system how us part much while long great people high last place "
    "small might found around model token vector query answer network latency stream "
    "packet socket server client request response header frame window buffer cache "
    "route layer batch shard index search embed learn train infer score rank signal "
    "store fetch parse encode decode send receive retry timeout connect close open read "
    "write flush queue pool thread core clock delay loss rate burst jitter hop path link "
    "node edge graph tree list map set key value field record table row column page "
    "block chunk piece part whole half full empty light heavy fast slow near far"
).split()


class RequestError(Exception):
    """A request the backend refuses; adapters map `status` to their own terms."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None,
                 code: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code

    def to_openai(self) -> dict[str, Any]:
        # OpenAI's shape: a broad type (invalid_request_error for every refusal of the
        # caller's request, 401 and 404 included) and the specific reason in `code`.
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind,
                          "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    """Server-side limits; every one is configurable from the server CLI."""

    max_body_bytes: int = 4 * 1024 * 1024   # 413 / RESOURCE_EXHAUSTED above this
    max_batch: int = 2048                   # inputs per embedding request
    max_input_chars: int = 32_768           # per input string
    max_dimensions: int = 8192
    max_tokens: int = 100_000
    max_model_ms: float = 600_000.0         # any single simulated delay


@dataclass(frozen=True)
class EmbedParams:
    inputs: tuple[str, ...]
    dimensions: int = 1536
    encoding_format: str = "float"          # "float" or "base64"
    model: str = EMBED_MODEL_ID
    compute_ms: float = 0.0                 # simulated model time per input
    seed: int = 0
    cache: bool = False                     # serve the encoded response from a cache


@dataclass(frozen=True)
class GenerateParams:
    prompt: str
    max_tokens: int = 16
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    seed: int = 0
    model: str = MODEL_ID
    include_usage: bool = False
    stream: bool = True
    chat: bool = True                       # chat.completion vs text_completion shape

    @property
    def prompt_tokens(self) -> int:
        return count_tokens(self.prompt)


@dataclass
class ServerStats:
    """Counters every server exposes (HTTP /health, gRPC Stats, WS stats message)."""

    requests: int = 0
    errors: int = 0
    active_streams: int = 0
    completed_streams: int = 0
    cancelled_streams: int = 0
    tokens_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters, and the CPU this process has used (all threads, microseconds):
        a client on another host reads the server's CPU per request from two of these."""
        return {**self.__dict__, "cpu_us": int(time.process_time() * 1e6)}


# ---------------------------------------------------------------- validation

def _number(obj: dict, key: str, where: str, *, default: float, lo: float, hi: float) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"'{where}{key}' must be a number, got {type(value).__name__}",
                           param=f"{where}{key}")
    if not lo <= value <= hi:
        raise RequestError(f"'{where}{key}' must be between {lo:g} and {hi:g}, got {value:g}",
                           param=f"{where}{key}")
    return float(value)


def _integer(obj: dict, key: str, where: str, *, default: int, lo: int, hi: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"'{where}{key}' must be an integer, got {type(value).__name__}",
                           param=f"{where}{key}")
    if not lo <= value <= hi:
        raise RequestError(f"'{where}{key}' must be between {lo} and {hi}, got {value}",
                           param=f"{where}{key}")
    return value


def _knobs(body: dict) -> dict:
    knobs = body.get("wirebench") or {}
    if not isinstance(knobs, dict):
        raise RequestError("'wirebench' must be an object of benchmark knobs", param="wirebench")
    return knobs


def _known_model(model: Any) -> str:
    """The request's model: one this server serves, or OpenAI's 404 model_not_found (either
    id is accepted on every endpoint: the fake model answers both kinds of request)."""
    if not isinstance(model, str):
        raise RequestError("'model' must be a string", param="model")
    if model not in (MODEL_ID, EMBED_MODEL_ID):
        raise RequestError(f"The model '{model}' does not exist; this server serves "
                           f"'{MODEL_ID}' and '{EMBED_MODEL_ID}'", status=404, param="model",
                           code="model_not_found")
    return model


def _require_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise RequestError(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def parse_embed_request(body: Any, limits: Limits = Limits()) -> EmbedParams:
    body = _require_object(body)
    if "input" not in body:
        raise RequestError("'input' is required: a string or a list of strings", param="input")
    raw = body["input"]
    inputs = (raw,) if isinstance(raw, str) else raw
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(s, str) for s in inputs):
        raise RequestError("'input' must be a string or a list of strings "
                           "(token arrays are not supported)", param="input")
    if not inputs:
        raise RequestError("'input' must not be empty", param="input")
    if len(inputs) > limits.max_batch:
        raise RequestError(f"batch of {len(inputs)} inputs exceeds the limit of "
                           f"{limits.max_batch}", status=413, param="input",
                           code="request_too_large")
    for i, text in enumerate(inputs):
        if len(text) > limits.max_input_chars:
            raise RequestError(f"input[{i}] has {len(text)} characters, limit is "
                               f"{limits.max_input_chars}", status=413, param=f"input[{i}]",
                               code="request_too_large")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise RequestError(f"'encoding_format' must be 'float' or 'base64', got {encoding!r}",
                           param="encoding_format")
    model = _known_model(body.get("model", EMBED_MODEL_ID))
    dimensions = _integer(body, "dimensions", "", default=1536, lo=1, hi=limits.max_dimensions)
    knobs = _knobs(body)
    compute_ms = _number(knobs, "compute_ms", "wirebench.", default=0.0, lo=0.0,
                         hi=limits.max_model_ms)
    seed = _integer(knobs, "seed", "wirebench.", default=0, lo=0, hi=2**63 - 1)
    cache = knobs.get("cache", False)
    if not isinstance(cache, bool):
        raise RequestError("'wirebench.cache' must be a boolean", param="wirebench.cache")
    return EmbedParams(tuple(inputs), dimensions, encoding, model, compute_ms, seed, cache)


def _chat_prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", param="messages")
    parts = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise RequestError(f"messages[{i}] must be an object with a 'role'",
                               param=f"messages[{i}]")
        content = msg.get("content", "")
        if isinstance(content, list):  # content parts: keep the text ones
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string",
                               param=f"messages[{i}].content")
        parts.append(f"{msg['role']}: {content}")
    return "\n".join(parts)


def parse_generate_request(body: Any, *, chat: bool, limits: Limits = Limits()) -> GenerateParams:
    body = _require_object(body)
    if chat:
        prompt = _chat_prompt(body.get("messages"))
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("'prompt' must be a string", param="prompt")
    if len(prompt) > limits.max_input_chars * 8:
        raise RequestError(f"prompt has {len(prompt)} characters, limit is "
                           f"{limits.max_input_chars * 8}", status=413, param="prompt",
                           code="request_too_large")
    key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = _integer(body, key, "", default=16, lo=1, hi=limits.max_tokens)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    model = _known_model(body.get("model", MODEL_ID))
    knobs = _knobs(body)
    ttft = _number(knobs, "ttft_ms", "wirebench.", default=0.0, lo=0.0, hi=limits.max_model_ms)
    itl = _number(knobs, "itl_ms", "wirebench.", default=0.0, lo=0.0, hi=limits.max_model_ms)
    seed = _integer(knobs, "seed", "wirebench.", default=0, lo=0, hi=2**63 - 1)
    return GenerateParams(prompt, max_tokens, ttft, itl, seed, model,
                          bool(options.get("include_usage", False)), stream, chat)


# ---------------------------------------------------------------- the model

def _digest_int(*parts: object) -> int:
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def embed_one(text: str, dimensions: int, seed: int = 0) -> np.ndarray:
    """A unit-norm little-endian float32 vector, a pure function of its arguments."""
    rng = np.random.default_rng(_digest_int(seed, dimensions, text))
    v = rng.standard_normal(dimensions)
    v /= np.linalg.norm(v)
    return v.astype("<f4")


def embed_batch(params: EmbedParams) -> np.ndarray:
    """Shape (len(inputs), dimensions), dtype <f4."""
    return np.stack([embed_one(t, params.dimensions, params.seed) for t in params.inputs])


def vector_b64(vector: np.ndarray) -> str:
    """OpenAI's base64 encoding_format: base64 of little-endian float32."""
    return base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode("ascii")


def count_tokens(text: str) -> int:
    """A whitespace token count: enough for usage fields of a fake model."""
    return max(1, len(text.split()))


def tokens_for(params: GenerateParams) -> list[str]:
    """The deterministic token texts for a request: same prompt + seed, same text."""
    rnd = random.Random(_digest_int(params.seed, params.prompt))
    words = rnd.choices(_VOCAB, k=params.max_tokens)
    return [w if k == 0 else " " + w for k, w in enumerate(words)]


def emit_deadline_ns(t0_ns: int, params: GenerateParams, k: int) -> int:
    """Absolute schedule: token k is due at t0 + ttft + k*itl (never sleep(itl), which drifts)."""
    return t0_ns + round(params.ttft_ms * 1e6) + k * round(params.itl_ms * 1e6)


@dataclass(frozen=True)
class TokenEvent:
    index: int
    text: str
    emit_ns: int            # server CLOCK_MONOTONIC at emission


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


@dataclass
class StreamPlan:
    """What a stream will emit and when; adapters walk it with a clock and a sleeper."""

    params: GenerateParams
    t0_ns: int
    tokens: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = tokens_for(self.params)

    def __iter__(self) -> Iterator[tuple[int, int, str]]:
        for k, text in enumerate(self.tokens):
            yield k, emit_deadline_ns(self.t0_ns, self.params, k), text
