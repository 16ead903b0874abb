"""The committed gRPC stubs match protos/inference.proto, and the wire twins hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from protos import inference_pb2 as pb
from protos.generate import OUTPUTS, ROOT, run_protoc


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    run_protoc(tmp_path)
    for name in OUTPUTS:
        fresh = (tmp_path / name).read_text()
        committed = (ROOT / name).read_text()
        assert committed == fresh, f"{name} is stale: run `python -m protos.generate`"


def _vectors() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((3, 5)).astype("<f4")


def _public(vectors: np.ndarray) -> pb.EmbedResponse:
    return pb.EmbedResponse(data=[pb.Embedding(values=row.tolist()) for row in vectors],
                            model="m", usage=pb.Usage(prompt_tokens=4, total_tokens=4))


def _twin(vectors: np.ndarray) -> pb.EmbedResponseRaw:
    return pb.EmbedResponseRaw(data=[pb.EmbeddingRaw(values=row.tobytes()) for row in vectors],
                               model="m", usage=pb.Usage(prompt_tokens=4, total_tokens=4))


def test_twin_serializes_to_the_same_bytes() -> None:
    vectors = _vectors()
    assert _twin(vectors).SerializeToString() == _public(vectors).SerializeToString()


def test_public_message_parses_twin_bytes() -> None:
    vectors = _vectors()
    parsed = pb.EmbedResponse.FromString(_twin(vectors).SerializeToString())
    assert np.array_equal(np.array([e.values for e in parsed.data], dtype="<f4"), vectors)
    assert parsed.usage.total_tokens == 4 and parsed.model == "m"


def test_twin_parses_public_bytes() -> None:
    vectors = _vectors()
    parsed = pb.EmbedResponseRaw.FromString(_public(vectors).SerializeToString())
    rows = [np.frombuffer(e.values, dtype="<f4") for e in parsed.data]
    assert np.array_equal(np.stack(rows), vectors)
