"""The merchant's client of the PaymentGateway service.

Each call sends a request's exact bytes (built once by ``setcore`` and stored by the
merchant before sending) over mutual TLS, with a named deadline, retrying
RESOURCE_EXHAUSTED and UNAVAILABLE with bounded backoff (``clients.transport``): the
gateway is idempotent on the RRPID, so a retry gets the response it committed the
first time. Every response is verified with setcore's opener before it is returned;
an answer that does not verify raises ``ProtocolError``, a gateway SET Error raises
``PeerError``, a transport failure ``TransportError``.

Answers are accepted only from the gateway the merchant's first verified PCertRes named
(SET-PROTOCOL.md 7.4): signed by a signature certificate with that certificate's subject
name, of the merchant's brand, chaining to the brand root, valid and unrevoked
(``setcore.signers.GatewayIdentity``). Another gateway, even one the same brand root
certified, cannot answer in its name; the same gateway's renewed certificate, and the
one it signed a stored answer with before a renewal, can. The pin is kept in the
merchant's database (``gateway_pin``), so it holds across starts and for every process
on that database: a PCertRes naming another gateway is refused, at a start too, naming
both, until an operator clears the pin (``setpay merchant forget-gateway``). The client
sends a PCertReq itself before its first answer if no gateway is pinned yet.

``GatewayKeys`` keeps the gateway's certificates from PCertRes, for PInitRes and the
requests sealed to the gateway: it is ``gateway_keys``'s, whose names the modules that
took them from here still find here.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import Message

from clients.merchant import metrics
from clients.merchant.gateway_keys import (
    FETCH_HOLD_OFF_MAX,
    FETCH_HOLD_OFF_SECONDS,
    GATEWAY_CERTIFICATES_TTL,
    GatewayKeys,
    ServedCertificates,
    served,
)
from clients.merchant.gateway_pin import GatewayPin, GatewayPinStore
from clients.merchant.metrics_labels import AUTHORIZATION, BATCH, GATEWAY_CERTIFICATES
from clients.merchant.records import OperationKind
from clients.transport import Caller
from setcore.auth_reversal import (
    AuthRevRequestState,
    AuthRevResult,
    open_auth_reversal_response,
)
from setcore.authorization import AuthRequestState, AuthResult, open_auth_response
from setcore.cap_rev_or_cred import (
    CapRevOrCredResult,
    CapRevOrCredState,
    open_capture_reversal_response,
    open_credit_response,
    open_credit_reversal_response,
)
from setcore.capture import CaptureResult, CaptureState, open_capture_response
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, fail
from setcore.freshness import now_ms
from setcore.gateway_admin import (
    BatchAdminResult,
    BatchAdminState,
    GatewayCertificate,
    build_pcert_request,
    open_batch_admin_response,
    open_pcert_response,
)
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.signers import GatewayIdentity
from setpay.v1 import authorization_pb2, capture_pb2, gateway_admin_pb2, services_pb2

log = logging.getLogger("setpay.merchant.gateway")

M = TypeVar("M", bound=Message)

__all__ = [
    "AUTHORIZE_DEADLINE_SECONDS",
    "CERTIFICATES_DEADLINE_SECONDS",
    "FETCH_HOLD_OFF_MAX",
    "FETCH_HOLD_OFF_SECONDS",
    "GATEWAY_CERTIFICATES_TTL",
    "SETTLEMENT_DEADLINE_SECONDS",
    "GatewayClient",
    "GatewayKeys",
    "ServedCertificates",
    "answers_heard",
    "pinned_since",
    "served",
]

_SERVICE = services_pb2.DESCRIPTOR.services_by_name["PaymentGatewayService"].full_name
# Authorization may wait on the issuer (a card network round trip in real life, a ledger
# commit here): it gets the longest deadline. SET lets the merchant answer the wallet
# "order received" meanwhile, so a slow issuer does not hold the shopper.
AUTHORIZE_DEADLINE_SECONDS = 30.0
# Captures, reversals, credits and batch operations are ledger updates: ten seconds only
# bounds a hang.
SETTLEMENT_DEADLINE_SECONDS = 10.0
# PCert is answered from the gateway's memory.
CERTIFICATES_DEADLINE_SECONDS = 5.0


def _method(name: str) -> str:
    return f"/{_SERVICE}/{name}"


_heard = threading.local()  # per thread: ``answers_heard``


def answers_heard() -> int:
    """How many answers this thread's gateway calls had (any ``GatewayClient``): a failure
    after the gateway answered (the answer opened, or saved) moves it; one before any call,
    or a call never answered, does not (``stored_requests``)."""
    return int(getattr(_heard, "answers", 0))


def pinned_since(pin: GatewayPin) -> str:
    """When ``pin`` was taken, as the merchant's messages say it: UTC, to the second."""
    return f"{datetime.fromtimestamp(pin.pinned_ms / 1000, UTC):%Y-%m-%d %H:%M:%S} UTC"


class GatewayClient:
    """Sends merchant requests to one payment gateway and verifies its answers."""

    def __init__(
        self,
        caller: Caller,
        credentials: Credentials,
        trust: TrustStore,
        merchant_id: str,
        pins: GatewayPinStore | None = None,
    ) -> None:
        """``pins``: where the pin is kept, the merchant's database; None keeps it in this
        client alone (a tool or a test with no merchant database)."""
        self._caller = caller
        self._credentials = credentials
        self._trust = trust
        self._merchant_id = merchant_id
        self._pins = pins
        self._lock = threading.Lock()
        self._pinned: GatewayPin | None = None

    def _call(self, method: str, request: bytes, response_cls: type[M], *, deadline: float) -> M:
        """``Caller.call``, counted for ``answers_heard`` once the gateway answered."""
        response = self._caller.call(method, request, response_cls, deadline=deadline)
        _heard.answers = answers_heard() + 1
        return response

    def _stored_pin(self) -> GatewayPin | None:
        """The pin, read from the database once it is there (caller holds the lock)."""
        if self._pinned is None and self._pins is not None:
            self._pinned = self._pins.gateway_pin()
            if self._pinned is not None:
                log.info("gateway: answers taken from %s, as before", self._pinned.identity)
        return self._pinned

    def _pin(self, signature: VerifiedCertificate) -> GatewayIdentity:
        """Take answers from the gateway whose signature certificate a verified PCertRes
        named; the first one decides, in this process or any before it on the same
        database. Returns that gateway; refused (INVALID_CERTIFICATE) if it is another."""
        named = GatewayIdentity.of(signature)
        with self._lock:
            pinned = self._stored_pin()
            if pinned is None:
                if self._pins is None:
                    pinned = GatewayPin(named, now_ms())
                else:
                    pinned = self._pins.pin_gateway(signature.der, named.brand_id)
                self._pinned = pinned
                if pinned.identity == named:
                    log.info("gateway: answers taken from %s from now on", named)
        if named != pinned.identity:
            # Another gateway answering PCertReq at our gateway's address: its key-exchange
            # certificate must not reach wallets, nor its answers count as our gateway's.
            raise fail(
                ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
                f"PCertRes names gateway {named}, not {pinned.identity}, the gateway this"
                f" merchant has taken answers from since its first PCertRes"
                f" ({pinned_since(pinned)}); if the merchant changed gateways on"
                " purpose, 'setpay merchant forget-gateway' clears that pin",
            )
        return named

    def gateway_identity(self) -> GatewayIdentity:
        """The gateway answers are accepted from (PCertReq first if none is pinned yet)."""
        with self._lock:
            pinned = self._stored_pin()
        if pinned is None:
            return self._fetch_certificates(self._trust.brand_id)[1]
        return pinned.identity

    @metrics.gateway_call(AUTHORIZATION)
    def authorize(
        self,
        request: bytes,
        state: AuthRequestState,
        *,
        deadline: float = AUTHORIZE_DEADLINE_SECONDS,
    ) -> AuthResult:
        """AuthReq -> verified AuthRes; ``deadline``: a shorter one (a wallet waiting)."""
        response = self._call(
            _method("Authorize"), request, authorization_pb2.AuthorizeResponse,
            deadline=min(deadline, AUTHORIZE_DEADLINE_SECONDS),
        )  # fmt: skip
        return open_auth_response(
            response, self._credentials, state, self._trust,
            gateway_identity=self.gateway_identity(),
        )  # fmt: skip

    @metrics.gateway_call(OperationKind.AUTH_REVERSAL)
    def reverse_authorization(self, request: bytes, state: AuthRevRequestState) -> AuthRevResult:
        """AuthRevReq -> verified AuthRevRes."""
        response = self._call(
            _method("AuthReversal"), request, authorization_pb2.AuthReversalResponse,
            deadline=SETTLEMENT_DEADLINE_SECONDS,
        )  # fmt: skip
        return open_auth_reversal_response(
            response, self._credentials, state, self._trust,
            gateway_identity=self.gateway_identity(),
        )  # fmt: skip

    @metrics.gateway_call(OperationKind.CAPTURE)
    def capture(self, request: bytes, state: CaptureState) -> CaptureResult:
        """CapReq -> verified CapRes."""
        response = self._call(
            _method("Capture"), request, capture_pb2.CaptureResponse,
            deadline=SETTLEMENT_DEADLINE_SECONDS,
        )  # fmt: skip
        return open_capture_response(
            response, self._credentials, state, self._trust,
            gateway_identity=self.gateway_identity(),
        )  # fmt: skip

    @metrics.gateway_call(OperationKind.CAPTURE_REVERSAL)
    def reverse_capture(self, request: bytes, state: CapRevOrCredState) -> CapRevOrCredResult:
        """CapRevReq -> verified CapRevRes."""
        response = self._call(
            _method("CaptureReversal"), request, capture_pb2.CaptureReversalResponse,
            deadline=SETTLEMENT_DEADLINE_SECONDS,
        )  # fmt: skip
        return open_capture_reversal_response(
            response, self._credentials, state, self._trust,
            gateway_identity=self.gateway_identity(),
        )  # fmt: skip

    @metrics.gateway_call(OperationKind.CREDIT)
    def credit(self, request: bytes, state: CapRevOrCredState) -> CapRevOrCredResult:
        """CredReq -> verified CredRes."""
        response = self._call(
            _method("Credit"), request, capture_pb2.CreditResponse,
            deadline=SETTLEMENT_DEADLINE_SECONDS,
        )  # fmt: skip
        return open_credit_response(
            response, self._credentials, state, self._trust,
            gateway_identity=self.gateway_identity(),
        )  # fmt: skip

    @metrics.gateway_call(OperationKind.CREDIT_REVERSAL)
    def reverse_credit(self, request: bytes, state: CapRevOrCredState) -> CapRevOrCredResult:
        """CredRevReq -> verified CredRevRes."""
        response = self._call(
            _method("CreditReversal"), request, capture_pb2.CreditReversalResponse,
            deadline=SETTLEMENT_DEADLINE_SECONDS,
        )  # fmt: skip
        return open_credit_reversal_response(
            response, self._credentials, state, self._trust,
            gateway_identity=self.gateway_identity(),
        )  # fmt: skip

    @metrics.gateway_call(BATCH)
    def batch_admin(self, request: bytes, state: BatchAdminState) -> BatchAdminResult:
        """BatchAdminReq -> verified BatchAdminRes."""
        response = self._call(
            _method("BatchAdmin"), request, gateway_admin_pb2.BatchAdminResponse,
            deadline=SETTLEMENT_DEADLINE_SECONDS,
        )  # fmt: skip
        return open_batch_admin_response(
            response, self._credentials, state, self._trust,
            gateway_identity=self.gateway_identity(),
        )  # fmt: skip

    def gateway_certificates(self, brand_id: str, bin_: str = "") -> GatewayCertificate:
        """PCertReq for one brand (and BIN) -> the verified gateway certificates for it.

        Refused (INVALID_CERTIFICATE) when they are another gateway's than the one the
        merchant's first PCertRes named (``gateway_pin``).
        """
        return self._fetch_certificates(brand_id, bin_)[0]

    # Counted here, so that the PCertReq ``gateway_identity`` sends is counted too.
    @metrics.gateway_call(GATEWAY_CERTIFICATES)
    def _fetch_certificates(
        self, brand_id: str, bin_: str = ""
    ) -> tuple[GatewayCertificate, GatewayIdentity]:
        """``gateway_certificates``, and the gateway they pin (the one answers come from)."""
        request, state = build_pcert_request(
            self._credentials, [(brand_id, bin_)], self._merchant_id
        )
        response = self._call(
            _method("GatewayCertificates"), request.SerializeToString(),
            gateway_admin_pb2.GatewayCertificatesResponse,
            deadline=CERTIFICATES_DEADLINE_SECONDS,
        )  # fmt: skip
        answer = open_pcert_response(response, self._credentials, state, self._trust)
        item = answer.items[0]
        return item, self._pin(served(item).signature)
