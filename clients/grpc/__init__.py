"""gRPC clients: unary and server-streaming calls over grpc.aio."""
