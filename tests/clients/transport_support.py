"""What the transport tests share: a status as the bank's servers shed a call with."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status


def shed_status(code: grpc.StatusCode, delay: float) -> grpc.Status:
    """``code`` with a google.rpc.RetryInfo asking for ``delay`` seconds in its trailers."""
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromTimedelta(timedelta(seconds=delay))
    detail = any_pb2.Any()
    detail.Pack(retry)
    number: int = code.value[0]
    status = status_pb2.Status(code=number, message="try later", details=[detail])
    return rpc_status.to_status(status)
