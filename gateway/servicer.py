"""The PaymentGateway servicer: thin — decode, call the plain-Python handler, encode."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import grpc

from gateway import admin, settlement
from gateway.answers import AnswerUnavailable, answer
from gateway.authorize import authorize
from gateway.bank import Bank
from gateway.ledger import RequestFenced, RrpidReused, Unanswered
from gateway.ledger.idempotency import SettledByHand, settled_refusal
from hsm.base import KeyHandle
from setcore.capture import peek_sealed_rrpid
from setcore.echoed_ids import reply_header
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import ID_BYTES, now_ms
from setcore.gateway_exchange import peek_rrpid, request_digest
from setpay.v1 import (
    authorization_pb2,
    capture_pb2,
    error_pb2,
    gateway_admin_pb2,
    services_pb2_grpc,
)

# reply_header is setcore's (its ids echoed only where well sized); gateway.ceiling answers
# with it too.
__all__ = ["PaymentGatewayServicer", "reply_header"]


def _rpc(
    name: str,
    request_field: str,
    response_cls: Callable[..., Any],
    result_field: str,
    handler: Callable[[Bank, Any], bytes],
    summary: str,
    *,
    decided: bool = True,
) -> Callable[[Any, Any, grpc.ServicerContext], Any]:
    """A PaymentGateway method: the request's sealed bytes through ``handler``.

    ``decided``: its requests are decided by the ledger under their RRPID, so a refusal
    of one as too old is fenced there (``PaymentGatewayServicer._recorded_answer``);
    False for a read the ledger never decides (PCertReq), which writes nothing.
    """

    def method(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        request_bytes = getattr(request, request_field)
        return self._serve(
            context, name, request, request_bytes, response_cls, result_field, handler,
            decided=decided,
        )  # fmt: skip

    method.__name__ = method.__qualname__ = name
    method.__doc__ = summary
    return method


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
        *,
        decided: bool,
    ) -> Any:
        hdr = reply_header(request.header)

        def digest() -> bytes:
            # The exact request, as every answer to it names it: a stored answer is looked
            # up by it, and a refusal carries it. Only those paths need it (the handler's
            # own checks hash the same bytes), so it is not computed for every call.
            return request_digest(request.DESCRIPTOR.full_name, request_bytes)

        def work() -> Any:
            if self._bank.refresh_revocation is not None:
                self._bank.refresh_revocation()
            # One moment per request: the checks are made as of it, and the ledger keeps
            # it with the decision for an answer built later (``_recorded_answer``).
            bank = self._bank.as_of(now_ms())
            try:
                result = handler(bank, request)
            except ProtocolError as refused:
                # A retry of a request already decided may no longer pass the checks (its
                # date aged out of the window): it gets the answer it got, or would have.
                # A refusal as too old is made final first (``_recorded_answer``).
                stale = decided and refused.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
                recorded = self._recorded_answer(request, request_bytes, digest(), handler, stale)
                if recorded is None:
                    raise
                result = recorded
            return response_cls(header=hdr, **{result_field: result})

        def on_error(error: error_pb2.SetError) -> Any:
            return response_cls(header=hdr, error=error)

        # The header's own RRPID, whatever its size: a refusal logs its first bytes and
        # length, and the signed Error names it only where it is an RRPID's size.
        rrpid = request.header.rrpid
        return answer(context, self._bank.credentials, rpc, digest, rrpid, work, on_error)

    def _recorded_answer(
        self,
        request: Any,
        request_bytes: bytes,
        digest: bytes,
        handler: Callable[[Bank, Any], bytes],
        fence: bool,
    ) -> bytes | None:
        """The answer to exactly these request bytes if the ledger decided them before.

        With ``fence`` (the handler refused them MESSAGE_TOO_OLD: their date, or their
        PI's order date), not a read but a write, ``Ledger.fence_stale``: the merchant
        builds a request so refused afresh, so no sending of these bytes may be decided
        after the refusal, and a read could miss one whose commit is still landing. The
        ledger returns that decision if it is committed (or was, the fence waiting for
        it), else fences the RRPID against any to come; StoreUnavailable when it cannot
        (UNAVAILABLE, never the refusal). Dates are checked only on data whose signature
        verified (``setcore.gateway_exchange.check_rr_tags``, after the envelope's
        signature; a PI's order date after its dual signature), and the RRPID read here
        is the envelope's, which that check holds equal to the signed one: a peer that
        cannot sign as the merchant cannot make this write. Any other refusal reads.

        Its stored bytes; or, for a decision whose answer was never stored (the gateway
        failed in between), the answer built now from the same request, its date and
        every certificate checked as of the moment they were checked the first time,
        against the revocation data held now (``_deciding_bank``: but for the gateway's
        own key-exchange certificates it is sealed to). None if the ledger never decided
        them. If a decided request fails its checks even so (a certificate it names
        revoked since, and still on its CRL), AnswerUnavailable: a retryable status, never
        the refusal, so the merchant does not build it afresh and have it applied twice;
        so too, its answer never built, once an operator settled it by hand. A
        revoked certificate leaves its CRL once it has been expired for
        ``gateway.ca.publishing.EXPIRED_CRL_GRACE``; from then on the answer is built and
        sent: the decision was valid when it was made, and it is the one the ledger
        applied.
        """
        rrpid = b""
        for peek in (peek_rrpid, peek_sealed_rrpid):  # EncB requests, then Enc ones
            try:
                rrpid = peek(request_bytes)
                break
            except ProtocolError:
                continue
        if len(rrpid) != ID_BYTES:
            return None
        ledger = self._bank.ledger
        try:
            if fence:
                recorded = ledger.fence_stale(rrpid, digest)
            else:
                recorded = ledger.stored_response(rrpid, digest)
        except (RrpidReused, RequestFenced):
            # Another request's RRPID, or these bytes refused as too old before: the
            # handler's refusal stands.
            return None
        if not isinstance(recorded, Unanswered):
            return recorded  # the stored answer, or None: never decided
        if isinstance(recorded, SettledByHand):
            # An operator settled it by hand: never answered, never refused (UNAVAILABLE).
            raise AnswerUnavailable(settled_refusal(rrpid, recorded))
        try:
            return handler(self._deciding_bank(recorded.checked_at_ms), request)
        except ProtocolError as exc:
            raise AnswerUnavailable(
                f"request {rrpid.hex()[:8]} was decided but its answer cannot be built now"
                f" ({ErrorCode.Name(exc.code)}: {exc.reason}); it stays unanswered in the"
                " ledger until an operator resolves it"
            ) from exc

    def _deciding_bank(self, checked_at_ms: int) -> Bank:
        """The bank that builds the answer to a decision left unanswered: as of the moment
        the request was first checked, opening each envelope sealed to an older
        key-exchange certificate of the gateway with that certificate's key whenever this
        process holds it, revoked or ended since or not
        (``gateway.opening_keys.OpeningKeys.decided_key_exchange``).

        Revoking that certificate (a compromised key, ``setpay ca revoke`` after a
        renewal) stops it opening anything new, and the handler's own checks refuse such
        an envelope as sealed to another (``gateway.opening_keys``); so does its end. A
        decided one is not new: the ledger matched these exact bytes, which it decided
        while the certificate stood (or after, had it been the newest of a bank that ran
        on: its own are judged at start), and the answer only tells the merchant that
        decision (a hold placed, a capture posted). Refused so here too, the request was
        answered UNAVAILABLE at every retry while the certificate stayed on its CRL (its
        life, a year, and ``EXPIRED_CRL_GRACE``), or for good once it had ended before a
        restart. Whoever holds the compromised key gains nothing: bytes it builds were
        never decided, and get the handler's refusal (``_serve``); a copy of the
        merchant's gets what the merchant's gets, as a stored answer does. A certificate
        that had ended when the process started opens them too
        (``gateway.older_key_exchange`` loads it), whenever they were checked. Any other
        thumbprint is chosen as the bank chooses it (the newest key; UNAVAILABLE for a
        certificate renewed since this process started). One whose key this process does
        not hold (deleted by hand: ``setpay ca prune-gateway`` keeps it while the ledger
        holds a decision awaiting its answer) opens nowhere: the decision stays unanswered
        (AnswerUnavailable) until the key and its kept certificate file are restored, or
        an operator settles it."""
        bank = self._bank.as_of(checked_at_ms)
        opening = bank.opening
        if opening is None:
            return bank
        chosen = bank.opening_credentials().key_exchange_for  # as the bank chooses

        def choose(thumb: bytes) -> tuple[KeyHandle, bytes]:
            return opening.decided_key_exchange(thumb) or chosen(thumb)

        # ``opening`` None: the handlers open with ``credentials``' own chooser, this one.
        return dataclasses.replace(
            bank, credentials=bank.credentials.choosing_key_exchange(choose), opening=None
        )

    # gRPC method names are fixed by services.proto; each row: request field, response
    # type, result field, handler.
    Authorize = _rpc(
        "Authorize", "auth_req", authorization_pb2.AuthorizeResponse, "auth_res",
        authorize, "AuthReq -> AuthRes.",
    )  # fmt: skip
    AuthReversal = _rpc(
        "AuthReversal", "auth_rev_req", authorization_pb2.AuthReversalResponse, "auth_rev_res",
        settlement.auth_reversal, "AuthRevReq -> AuthRevRes.",
    )  # fmt: skip
    Capture = _rpc(
        "Capture", "cap_req", capture_pb2.CaptureResponse, "cap_res",
        settlement.capture, "CapReq -> CapRes.",
    )  # fmt: skip
    CaptureReversal = _rpc(
        "CaptureReversal", "cap_rev_req", capture_pb2.CaptureReversalResponse, "cap_rev_res",
        settlement.capture_reversal, "CapRevReq -> CapRevRes.",
    )  # fmt: skip
    Credit = _rpc(
        "Credit", "cred_req", capture_pb2.CreditResponse, "cred_res",
        settlement.credit, "CredReq -> CredRes.",
    )  # fmt: skip
    CreditReversal = _rpc(
        "CreditReversal", "cred_rev_req", capture_pb2.CreditReversalResponse, "cred_rev_res",
        settlement.credit_reversal, "CredRevReq -> CredRevRes.",
    )  # fmt: skip
    GatewayCertificates = _rpc(
        "GatewayCertificates", "p_cert_req", gateway_admin_pb2.GatewayCertificatesResponse,
        "p_cert_res", admin.gateway_certificates, "PCertReq -> PCertRes.", decided=False,
    )  # fmt: skip
    BatchAdmin = _rpc(
        "BatchAdmin", "batch_admin_req", gateway_admin_pb2.BatchAdminResponse, "batch_admin_res",
        admin.batch_admin, "BatchAdminReq -> BatchAdminRes.",
    )  # fmt: skip
