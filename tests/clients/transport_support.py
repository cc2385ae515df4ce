"""What the transport tests share: a status as the bank's servers shed a call with, and a
CA stand-in that records the bytes of the requests it is sent."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from datetime import timedelta

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from clients.transport import ChannelConfig, open_channel
from setpay.v1 import services_pb2

_CA_SERVICE = services_pb2.DESCRIPTOR.services_by_name["CertificateAuthorityService"].full_name


def shed_status(code: grpc.StatusCode, delay: float) -> grpc.Status:
    """``code`` with a google.rpc.RetryInfo asking for ``delay`` seconds in its trailers."""
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromTimedelta(timedelta(seconds=delay))
    detail = any_pb2.Any()
    detail.Pack(retry)
    number: int = code.value[0]
    status = status_pb2.Status(code=number, message="try later", details=[detail])
    return rpc_status.to_status(status)


@contextmanager
def recording_ca() -> Iterator[tuple[dict[str, bytes], grpc.Channel]]:
    """A CA stand-in on port 0 that records each CardCInit and MeAqCInit request's bytes
    (by method name) and answers with an empty message; a channel to it."""
    seen: dict[str, bytes] = {}

    def recorder(name: str) -> grpc.RpcMethodHandler[bytes, bytes]:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            seen[name] = request
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handlers = {name: recorder(name) for name in ("CardCInit", "MeAqCInit")}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(_CA_SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = open_channel(ChannelConfig(f"127.0.0.1:{port}", insecure=True), "CA")
    try:
        yield seen, channel
    finally:
        channel.close()
        server.stop(grace=None)
