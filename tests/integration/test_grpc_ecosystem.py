"""The gRPC server speaks the ecosystem's standard services: health (Kubernetes probes,
grpc_health_probe) and reflection (grpcurl and grpcui call it without the .proto)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


@pytest.fixture(scope="module")
def channel(servers):
    srv = servers.start("grpc", api_key="sk-key")   # probes carry no key
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        yield ch


@pytest.mark.parametrize("service", ["", "wirebench.v1.Inference"])
def test_health_says_serving_without_a_key(channel, service):
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _reflect(channel, **request):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return next(iter(stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=5)))


def test_reflection_lists_and_describes_the_service_for_a_protoless_call(channel):
    names = {s.name for s in _reflect(channel, list_services="").list_services_response.service}
    assert "wirebench.v1.Inference" in names and "grpc.health.v1.Health" in names
    # Build the request type from the reflected descriptors alone, as grpcurl does,
    # and call Embed with it: the key is refused, which proves the call reached it.
    files = _reflect(channel, file_containing_symbol="wirebench.v1.Inference")
    pool = descriptor_pool.DescriptorPool()
    protos = [descriptor_pb2.FileDescriptorProto.FromString(raw)
              for raw in files.file_descriptor_response.file_descriptor_proto]
    for proto in sorted(protos, key=lambda p: len(p.dependency)):
        pool.Add(proto)
    method = pool.FindServiceByName("wirebench.v1.Inference").methods_by_name["Embed"]
    request_class = message_factory.GetMessageClass(method.input_type)
    call = channel.unary_unary("/wirebench.v1.Inference/Embed",
                               request_serializer=request_class.SerializeToString,
                               response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as err:
        call(request_class(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
