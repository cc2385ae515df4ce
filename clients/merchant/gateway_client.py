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

``GatewayKeys`` keeps the gateway's certificates from PCertRes: fetched at start, again
after ``GATEWAY_CERTIFICATES_TTL``, when the key-exchange certificate nears its end, or
as soon as the merchant's trust store no longer accepts them (revoked, say, after the
bank renewed the gateway's keys for a compromised one): a revoked certificate kept for
the rest of the hour would have every wallet refuse the PInitRes naming it and the
gateway refuse every AuthReq sealed to it (WRONG_RECIPIENT, final), every purchase
failing. Those it refused are forgotten; a refused PCertRes is asked for again after a
hold-off (5 s, doubling to a minute), a fetch that got no answer at the next use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from google.protobuf.message import Message

from clients.errors import ConfigError, TransportError
from clients.merchant import metrics
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
from setcore.enum_names import code_name
from setcore.envelope import Recipient
from setcore.errors import ErrorCode, ProtocolError, fail
from setcore.freshness import now_ms
from setcore.gateway_admin import (
    SUCCESS,
    BatchAdminResult,
    BatchAdminState,
    GatewayCertificate,
    build_pcert_request,
    open_batch_admin_response,
    open_pcert_response,
)
from setcore.pki.bci import RevocationUnavailable
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.signers import GatewayIdentity
from setpay.v1 import authorization_pb2, capture_pb2, gateway_admin_pb2, services_pb2

log = logging.getLogger("setpay.merchant.gateway")

M = TypeVar("M", bound=Message)

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
# Gateway certificates are asked for again after this long, so a gateway key rotation
# reaches PInitRes within the hour.
GATEWAY_CERTIFICATES_TTL = timedelta(hours=1)
# After a PCertRes is refused (a revoked certificate served), the next PCertReq waits this
# long, doubled after each further refusal up to the most: uses meanwhile raise it again.
FETCH_HOLD_OFF_SECONDS = 5.0
FETCH_HOLD_OFF_MAX = 60.0  # seconds


def _method(name: str) -> str:
    return f"/{_SERVICE}/{name}"


_heard = threading.local()  # per thread: ``answers_heard``


def answers_heard() -> int:
    """How many answers this thread's gateway calls had (any ``GatewayClient``): a failure
    after the gateway answered (the answer opened, or saved) moves it; one before any call,
    or a call never answered, does not (``stored_requests``)."""
    return int(getattr(_heard, "answers", 0))


@dataclass(frozen=True)
class ServedCertificates:
    """The gateway's verified certificates for a brand it serves: the key-exchange one
    named in PInitRes and sealed to, the signature one its answers are checked against,
    and the CA certificates between the key-exchange one and the brand root."""

    key_exchange: VerifiedCertificate
    signature: VerifiedCertificate
    chain: tuple[bytes, ...]


def served(item: GatewayCertificate) -> ServedCertificates:
    """A PCertRes item's certificates; ``ConfigError`` if it serves none for its brand."""
    key_exchange, signature = item.key_exchange, item.signature
    if item.code != SUCCESS or key_exchange is None or signature is None:
        name = code_name(gateway_admin_pb2.PCertCode, item.code)
        raise ConfigError(f"the gateway serves no certificate for brand {item.brand_id}: {name}")
    return ServedCertificates(key_exchange, signature, item.chain)


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


@dataclass(frozen=True)
class _Stale:
    """Why ``GatewayKeys`` fetches the gateway's certificates again: ``refused`` when its
    trust store no longer accepts them (a warning), not merely their age."""

    why: str
    refused: bool = False


class GatewayKeys:
    """The gateway certificates the merchant names in PInitRes and seals requests to."""

    def __init__(
        self,
        fetch: Callable[[], GatewayCertificate],
        ttl: timedelta = GATEWAY_CERTIFICATES_TTL,
        clock: Callable[[], float] = time.monotonic,
        *,
        trust: TrustStore | None = None,
    ) -> None:
        """``fetch``: a verified PCertRes item for the merchant's brand; one that serves
        no certificates is refused as ``gateway_certificates`` refuses it (``served``).

        ``trust``: the merchant's trust store, which its revocation feed keeps current
        (``clients.revocation``): certificates it refuses are fetched again at the next
        ``current``, not an hour later. None (a tool or a test with no trust store of its
        own) judges them by their age and end alone."""
        self._fetch = fetch
        self._ttl = ttl.total_seconds()
        self._clock = clock
        self._trust = trust
        self._lock = threading.Lock()
        self._current: ServedCertificates | None = None
        self._fetched_at = 0.0
        # Fetches ended; the latest one's failure, and until when it stands for the next
        # (``FETCH_HOLD_OFF_SECONDS``); once the trust store refused those held, why.
        self._ended = 0
        self._failure: Exception | None = None
        self._held_until = self._hold_off = 0.0
        self._withdrawn: str | None = None

    def _stale(self, current: ServedCertificates) -> _Stale | None:
        """Why the certificates held must be fetched again; None while they serve."""
        age = self._clock() - self._fetched_at
        if age >= self._ttl:
            return _Stale(f"fetched {age:.0f} s ago")
        # Ask again before the certificate ends rather than hand out one about to expire.
        ends = current.key_exchange.not_after
        if ends <= datetime.now(UTC) + self._ttl_delta():
            return _Stale(f"the key-exchange certificate ends at {ends:%Y-%m-%d %H:%M} UTC")
        return self._refused(current)

    def _refused(self, current: ServedCertificates) -> _Stale | None:
        """Why the trust store no longer accepts the certificates held; None while it does.

        Its chain verification, whose answer it caches until its revocation data changes
        (or the chain's validity or that data's window ends): a dictionary lookup per
        certificate while they stand, a full validation once the feed installs new data.
        Revocation data too old to judge by (``RevocationUnavailable``) refuses nothing
        here: a PCertRes fetched now would be judged by the same data, and every message
        the merchant opens waits on that feed anyway (``authorizer``). Certificates it
        refused are forgotten (``_held_or_fetched``): it never judges them again."""
        if self._trust is None:
            return None
        held = (
            (current.key_exchange, CertificateUsage.KEY_EXCHANGE),
            (current.signature, CertificateUsage.SIGNATURE),
        )
        for certificate, usage in held:
            try:
                self._trust.verify_chain(certificate.der, current.chain, PAYMENT_GATEWAY, usage)
            except RevocationUnavailable:
                return None
            except ProtocolError as refused:
                return _Stale(
                    f"the merchant's trust store refuses the gateway's {usage.value}"
                    f" certificate {certificate.thumbprint.hex()[:8]}: {refused}",
                    refused=True,
                )
        return None

    def _ttl_delta(self) -> timedelta:
        return timedelta(seconds=self._ttl)

    def current(self) -> ServedCertificates:
        """The gateway's verified certificates, fetched again when stale.

        Raises what ``fetch`` raised when they must be fetched again and cannot be. One
        thread fetches at a time; after a failure the others raise it at once meanwhile
        (not one PCertReq each in turn), as does a caller that waited for a fetch that
        failed. A refused PCertRes is raised again, unfetched, until its hold-off ends
        (``FETCH_HOLD_OFF_SECONDS``); the gateway unreachable, the next use asks again,
        as any request to it does, so that its return is seen at once. None the trust
        store refused is handed out again, even once it cannot judge them (revocation
        data past its window): wallets and the gateway would refuse it."""
        current = self._current
        if current is not None and self._stale(current) is None:
            return current
        seen = self._ended
        if not self._lock.acquire(blocking=False):
            failure = self._failure
            if failure is not None:  # another thread fetches after it failed: not waited for
                raise failure.with_traceback(None)
            self._lock.acquire()  # the first fetch, or the first since they went stale
        try:
            return self._held_or_fetched(seen)
        finally:
            self._lock.release()

    def _held_or_fetched(self, seen: int) -> ServedCertificates:
        """``current``, the lock held; ``seen``: the fetches ended when the caller came (one
        ended since that failed, or one failed within its hold-off, is raised again)."""
        current = self._current
        stale = None if current is None else self._stale(current)
        if current is not None and stale is None:
            return current
        if stale is not None and stale.refused:  # forgotten: never handed out again
            log.warning("gateway certificates to be fetched again: %s", stale.why)
            self._current, self._withdrawn = None, stale.why
        failure = self._failure
        if failure is not None and (self._ended != seen or self._clock() < self._held_until):
            raise failure.with_traceback(None)
        return self._fetched(stale)

    def _fetched(self, stale: _Stale | None) -> ServedCertificates:
        """The certificates fetched now (the lock held), in place of those held, if any
        (``stale`` says why they no longer serve). A failure is kept (``_failed``) and
        raised as it came, for the caller to meet as any failure of ``fetch``."""
        if stale is not None and not stale.refused:
            log.debug("gateway certificates fetched again: %s", stale.why)
        try:
            current = served(self._fetch())
        except Exception as exc:
            self._failed(exc)
            raise
        finally:
            self._ended += 1
        self._current, self._fetched_at = current, self._clock()
        self._failure, self._hold_off, self._withdrawn = None, 0.0, None
        log.info(
            "gateway certificates: key exchange %s (%s)",
            current.key_exchange.thumbprint.hex()[:8], current.key_exchange.subject_id,
        )  # fmt: skip
        return current

    def _failed(self, exc: Exception) -> None:
        """Keep a fetch's failure: held off if the gateway answered, doubling, not while it
        is unreachable. After a refusal by the trust store, a warning: once a hold-off, and
        for the gateway unreachable, once until it answers."""
        away = isinstance(exc, TransportError)
        quiet = away and isinstance(self._failure, TransportError)
        self._failure, self._held_until = exc, 0.0
        if not away:
            self._hold_off = min(2 * self._hold_off or FETCH_HOLD_OFF_SECONDS, FETCH_HOLD_OFF_MAX)
            self._held_until = self._clock() + self._hold_off
        if self._withdrawn is not None:
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "gateway certificates not fetched again (%s: %s); none is handed out until"
                " they are, asked again %s", type(exc).__name__, exc,
                "at the next use" if away else f"in {self._hold_off:.0f} s",
            )  # fmt: skip

    def recipient(self) -> Recipient:
        """The gateway key-exchange key requests are sealed to."""
        return self.current().key_exchange.recipient()
