"""The PaymentGateway servicer: thin — decode, call the plain-Python handler, encode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from gateway.answers import answer
from gateway.authorize import authorize
from gateway.bank import Bank
from setcore.purchase import header
from setpay.v1 import authorization_pb2, common_pb2, error_pb2, services_pb2_grpc


def reply_header(request_header: common_pb2.Header) -> common_pb2.Header:
    """The response's routing header: the request's ids echoed, our date."""
    return header(
        rrpid=request_header.rrpid,
        xid=request_header.xid,
        lid_c=request_header.lid_c,
        lid_m=request_header.lid_m,
    )


class PaymentGatewayServicer(services_pb2_grpc.PaymentGatewayServiceServicer):
    """Serves the PaymentGateway service of one bank."""

    def __init__(self, bank: Bank) -> None:
        self._bank = bank

    def _serve(
        self,
        context: grpc.ServicerContext,
        rpc: str,
        request: Any,
        request_bytes: bytes,
        response_cls: Callable[..., Any],
        result_field: str,
        handler: Callable[[Bank, Any], bytes],
    ) -> Any:
        hdr = reply_header(request.header)

        def work() -> Any:
            return response_cls(header=hdr, **{result_field: handler(self._bank, request)})

        def on_error(error: error_pb2.SetError) -> Any:
            return response_cls(header=hdr, error=error)

        return answer(context, self._bank.credentials, rpc, request_bytes, work, on_error)

    def Authorize(  # noqa: N802 - gRPC method name
        self, request: authorization_pb2.AuthorizeRequest, context: grpc.ServicerContext
    ) -> authorization_pb2.AuthorizeResponse:
        """AuthReq -> AuthRes."""
        response: authorization_pb2.AuthorizeResponse = self._serve(
            context, "Authorize", request, request.auth_req,
            authorization_pb2.AuthorizeResponse, "auth_res", authorize,
        )  # fmt: skip
        return response
