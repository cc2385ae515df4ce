"""The Merchant gRPC service: thin — decode, call ``Checkout``, encode; and its server.

Requests are parsed by our own deserializer, so an unparseable outer frame is answered
INVALID_ARGUMENT instead of gRPC's INTERNAL. The wallet reaches the merchant over
server-authenticated TLS (SET never asked wallets for client certificates).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.merchant import metrics
from clients.merchant.answers import answer
from clients.merchant.checkout import Checkout
from clients.merchant.gateway_client import AUTHORIZE_DEADLINE_SECONDS
from clients.transport import MAX_MESSAGE_BYTES
from setcore.admission import (
    HEALTH_RESERVE,
    SHED_BACKLOG,
    Admission,
    InFlightPool,
    given_up,
    release_pools,
)
from setcore.credentials import Credentials
from setcore.echoed_ids import echoed_id, reply_header
from setcore.error_message import request_digest
from setcore.served_health import ServedHealth
from setpay.v1 import error_pb2, purchase_pb2, services_pb2, services_pb2_grpc

log = logging.getLogger("setpay.merchant")

SERVICE_NAME = services_pb2.DESCRIPTOR.services_by_name["MerchantService"].full_name
# How long in-flight calls may finish when the merchant stops: a Purchase waiting on the
# gateway needs up to the Authorize deadline; past this the wallet retries with Inquiry.
GRACE_SECONDS = 5.0
# Of a Purchase's deadline, what is kept to sign and send the PRes once the wait for the
# gateway ends: a signature is a millisecond or so, the rest covers a loaded host and the
# network back, so the wallet hears "order received" before its own deadline passes.
ANSWER_MARGIN_SECONDS = 1.0
# Past this much time left a Purchase is treated as having no due time: its deadline is
# longer than any one Authorize may take, and a client that set none is given some 292
# years by grpcio, too long for a lock's timeout (OverflowError).
UNBOUNDED_ABOVE_SECONDS = AUTHORIZE_DEADLINE_SECONDS + ANSWER_MARGIN_SECONDS


def _answer_by(remaining: float | None) -> float | None:
    """When a Purchase's PRes must be signed (``time.monotonic()``), from its deadline's
    ``remaining`` seconds; None when that bounds nothing (``UNBOUNDED_ABOVE_SECONDS``)."""
    if remaining is None or remaining > UNBOUNDED_ABOVE_SECONDS:
        return None
    return time.monotonic() + remaining - ANSWER_MARGIN_SECONDS


class MerchantServicer(services_pb2_grpc.MerchantServiceServicer):
    """Serves PInit, Purchase and Inquiry for one merchant."""

    def __init__(self, checkout: Checkout, credentials: Credentials) -> None:
        self._checkout = checkout
        self._credentials = credentials

    def _serve(
        self,
        context: grpc.ServicerContext,
        rpc: str,
        request: Any,
        request_bytes: bytes,
        response_cls: Callable[..., Any],
        work: Callable[[Any], Any],
    ) -> Any:
        def digest() -> bytes:
            # The exact request, as a refusal names it: only a refusal needs it, and most
            # calls are answered, so a call answered is not hashed for it.
            return request_digest(request.DESCRIPTOR.full_name, request_bytes)

        def on_error(error: error_pb2.SetError) -> Any:
            return response_cls(header=reply_header(request.header), error=error)

        return answer(
            context, self._credentials, rpc, digest, echoed_id(request.header.rrpid),
            lambda: work(request), on_error,
        )  # fmt: skip

    def PInit(  # noqa: N802 - gRPC method name
        self,
        request: purchase_pb2.PInitRequest,
        context: grpc.ServicerContext,
        received: bytes | None = None,
    ) -> purchase_pb2.PInitResponse:
        """PInitReq -> PInitRes.

        ``received``: the bytes the request came as (the server passes them). PInitReq is
        the call's frame itself, not bytes inside it as PReq and InqReq are, and its
        Error names the message as received: parsed and serialized again, it may differ
        (fields in another order, an unknown one dropped or moved).
        """
        response: purchase_pb2.PInitResponse = self._serve(
            context, "PInit", request,
            request.SerializeToString() if received is None else received,
            purchase_pb2.PInitResponse, self._checkout.pinit,
        )  # fmt: skip
        return response

    def Purchase(  # noqa: N802 - gRPC method name
        self, request: purchase_pb2.PurchaseRequest, context: grpc.ServicerContext
    ) -> purchase_pb2.PurchaseResponse:
        """PReq -> PRes, before the wallet's deadline (``ANSWER_MARGIN_SECONDS``)."""
        answer_by = _answer_by(context.time_remaining())
        response: purchase_pb2.PurchaseResponse = self._serve(
            context, "Purchase", request, request.p_req, purchase_pb2.PurchaseResponse,
            lambda r: self._checkout.purchase(r, answer_by=answer_by),
        )  # fmt: skip
        return response

    def Inquiry(  # noqa: N802 - gRPC method name
        self, request: purchase_pb2.InquiryRequest, context: grpc.ServicerContext
    ) -> purchase_pb2.InquiryResponse:
        """InqReq -> InqRes."""
        response: purchase_pb2.InquiryResponse = self._serve(
            context, "Inquiry", request, request.inq_req,
            purchase_pb2.InquiryResponse, self._checkout.inquiry,
        )  # fmt: skip
        return response


@dataclass(frozen=True)
class ServerSettings:
    """Where and how the Merchant service listens; every limit named."""

    listen: str
    threads: int
    max_concurrent_rpcs: int
    #: (certificate chain PEM, private key PEM) for server-authenticated TLS; None: plaintext.
    tls: tuple[bytes, bytes] | None
    max_message_bytes: int = MAX_MESSAGE_BYTES


class _Unparseable:
    """Stands in for a request whose outer frame did not parse."""


@dataclass(frozen=True)
class _Received:
    """A request frame as parsed, and the bytes it came as."""

    message: Message
    data: bytes


def _parser(cls: type[Message]) -> Callable[[bytes], object]:
    def parse(data: bytes) -> object:
        try:
            return _Received(cls.FromString(data), data)
        except DecodeError:
            return _Unparseable()

    return parse


def _guarded(
    method: Callable[..., Any], *, with_frame: bool = False
) -> Callable[[object, grpc.ServicerContext], Any]:
    """The method, given the parsed request (and, ``with_frame``, the bytes it came as)."""

    def handle(request: object, context: grpc.ServicerContext) -> Any:
        # A call queued for a thread while its wallet gave up: no answer reaches it, and
        # a Purchase would still wait on the gateway, holding a thread for nobody (its
        # PReq unread, nothing bought: the wallet was told the call failed).
        gone = given_up(context)
        if gone is not None:
            context.abort(gone, "the wallet gave up before the call was handled")
        if not isinstance(request, _Received):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unparseable request frame")
        if with_frame:
            return method(request.message, context, request.data)
        return method(request.message, context)

    return handle


def _handler(servicer: MerchantServicer) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    messages: dict[str, tuple[type[Message], Callable[[object, grpc.ServicerContext], Any]]] = {
        # PInitReq is its frame: its Error names the bytes received (``PInit``).
        "PInit": (purchase_pb2.PInitRequest, _guarded(servicer.PInit, with_frame=True)),
        "Purchase": (purchase_pb2.PurchaseRequest, _guarded(servicer.Purchase)),
        "Inquiry": (purchase_pb2.InquiryRequest, _guarded(servicer.Inquiry)),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            metrics.served(name, method),
            request_deserializer=_parser(request_cls),
            response_serializer=lambda m: m.SerializeToString(),
        )
        for name, (request_cls, method) in messages.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


class MerchantServer:
    """The Merchant service's gRPC server, the pools its calls and refusals run on, and its
    health servicer."""

    def __init__(
        self,
        server: grpc.Server,
        pools: tuple[futures.ThreadPoolExecutor, ...],
        health: ServedHealth,
    ) -> None:
        self._server = server
        self._pools = pools
        self.health = health

    def stop(self, grace: float | None) -> threading.Event:
        """gRPC's ``stop``, after which every health Watch stream is told NOT_SERVING and
        ended (``ServedHealth.end_watches``): a Watch is a call in flight, and one left open
        (a balancer's) held the stop for its whole grace period with nothing to finish.
        Neither waits for a peer (the health servicer's own threads send), and a stream
        whose peer takes nothing is cancelled by its stall watch, ended or not. The pools'
        threads end once it has stopped."""
        stopped: threading.Event = self._server.stop(grace)
        # After gRPC's stop began: no Watch starts from now on.
        self.health.enter_graceful_shutdown()
        self.health.end_watches()
        release_pools(stopped, self._pools)
        return stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """gRPC's ``wait_for_termination``."""
        return bool(self._server.wait_for_termination(timeout))


def start_server(
    servicer: MerchantServicer, settings: ServerSettings
) -> tuple[MerchantServer, int]:
    """Build and start the Merchant service (with grpc.health.v1); returns it and its port.

    Calls past ``settings.max_concurrent_rpcs`` in flight (queued or running) are shed as
    the bank sheds them (``setcore.admission``): RESOURCE_EXHAUSTED with a retry delay,
    counted (``metrics.rpc_shed``), health checks with a reserve of their own. gRPC's own
    limit stays on only as the backstop above ours. Once it has stopped
    (``MerchantServer.stop``), the threads of both pools end, as the bank's do."""
    pool = InFlightPool(settings.threads)
    admission = Admission(pool, settings.max_concurrent_rpcs, metrics.rpc_shed)
    server = grpc.server(
        pool,
        handlers=[_handler(servicer)],
        interceptors=[admission],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs + HEALTH_RESERVE + SHED_BACKLOG,
    )
    # Keeps its own name and "" only: a Watch for any other is told SERVICE_UNKNOWN and
    # kept under no name (``setcore.served_health``).
    health_servicer = ServedHealth((SERVICE_NAME,))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.tls is None:
        log.warning("Merchant service on %s is PLAINTEXT: local experiments only", settings.listen)
    try:
        if settings.tls is None:
            port = server.add_insecure_port(settings.listen)
        else:
            chain, key = settings.tls
            credentials = grpc.ssl_server_credentials([(key, chain)])
            port = server.add_secure_port(settings.listen, credentials)
    except RuntimeError:  # grpcio's way of saying the bind failed, as at the bank
        port = 0
    if port == 0:
        pool.shutdown(wait=False)
        admission.refusals.shutdown(wait=False)
        raise OSError(f"could not bind {settings.listen}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("Merchant service listening on port %d", port)
    return MerchantServer(server, (pool, admission.refusals), health_servicer), port
