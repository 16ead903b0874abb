"""With --api-key, /health and gRPC Stats keep liveness open but show counters only with
the key; the standard gRPC health service stays open for probes."""

from __future__ import annotations

import json
import urllib.request

import grpc
import pytest

from protos import inference_pb2 as pb


def health(port: int, key: str | None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/health")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def test_http_health_counters_need_the_key(servers):
    srv = servers.start("h1", api_key="sk-k")
    assert health(srv.port, None) == {"status": "ok"}
    assert health(srv.port, "wrong") == {"status": "ok"}
    assert "requests" in health(srv.port, "sk-k")["stats"]


def test_grpc_stats_needs_the_key(servers):
    srv = servers.start("grpc", api_key="sk-k")
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stats = ch.unary_unary("/wirebench.v1.Inference/Stats",
                               request_serializer=lambda b: b,
                               response_deserializer=pb.StatsResponse.FromString)
        with pytest.raises(grpc.RpcError) as err:
            stats(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stats(b"", timeout=5, metadata=(("authorization", "Bearer sk-k"),))
        assert "requests" in reply.counters
