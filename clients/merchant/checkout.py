"""The merchant's side of the purchase protocol: PInit, Purchase and Inquiry, in plain Python.

Every check SET asks of the merchant (SET-PROTOCOL.md 5.5) is setcore's
``verify_purchase``: transaction ids and LID-M our own, Chall-M echoed, HOD recomputed
from our own order, the cardholder's chain current and unrevoked, the dual signature
good. What this module adds is the merchant's memory: the order agreed out of band
(found by LID-M at PInit, by XID afterwards) and what became of it.

Failures are raised as ``ProtocolError`` with the code the wallet gets in a signed SET
Error (``clients.merchant.answers`` builds it): an unknown LID-M is UNKNOWN_LID, and so
is one whose order is paid for (the logged reason says how: ``order_store.OfferTaken``;
one declined or failed is offered again, under a new XID, until the offer has had
``MAX_ORDERS_PER_OFFER`` orders: ``OfferUsedUp``), an unknown XID UNKNOWN_XID, a second
different purchase for one XID PI_PREVIOUSLY_USED.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

from clients.errors import OrderStateError, UnknownOrder
from clients.merchant import metrics
from clients.merchant.authorizer import APPROVED, Authorizer
from clients.merchant.config import DEFAULT_THREADS, AnswerMode
from clients.merchant.gateway_client import GatewayKeys
from clients.merchant.order_store import OfferTaken, OfferUsedUp
from clients.merchant.records import (
    Operation,
    OperationKind,
    OperationState,
    Order,
    OrderState,
    short,
)
from clients.merchant.store import MerchantStore
from clients.revocation import RevocationFeed
from setcore.credentials import Credentials
from setcore.dualsig import MerchantView
from setcore.enum_names import code_name
from setcore.errors import ErrorCode, fail
from setcore.freshness import new_id, now_ms
from setcore.pki.bci import RevocationUnavailable
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import (
    MerchantOrder,
    build_pinit_response,
    build_purchase_response,
    check_pinit_request,
    header,
    inquiry_xid,
    open_inquiry_request,
    open_purchase_request,
    verify_purchase,
)
from setpay.v1 import authorization_pb2, common_pb2, purchase_pb2

log = logging.getLogger("setpay.merchant")

C = purchase_pb2

# Server threads a Purchase waiting on the gateway never takes: each waits up to its
# wallet's deadline (tens of seconds), so with every thread held a PInit or Inquiry
# admitted behind them would wait out its own deadline in the queue. Two keep one for the
# quick calls and one more for a health check or a call that is slow for another reason.
THREADS_KEPT_FROM_THE_GATEWAY = 2
# How long a Purchase waits for one of the ``gateway_waits`` places before it is answered
# "order received" and left to the one worker: a healthy gateway frees a place within a
# round trip (tens of ms), so ordinary load is authorized at once; one slow for longer
# than this still diverts the overflow, and a thread is held no longer than this for it.
SLOT_WAIT_SECONDS = 0.3


def gateway_waits(threads: int) -> int:
    """How many Purchases of a server of ``threads`` may wait on the gateway at once (at
    least one): the threads but those kept for the quick calls. A Purchase past it is
    answered "order received" once ``SLOT_WAIT_SECONDS`` pass without a place, its
    authorization left to the worker."""
    return max(1, threads - THREADS_KEPT_FROM_THE_GATEWAY)


def completion_of(order: Order, captured: int, credited: int) -> purchase_pb2.PResPayload:
    """What the cardholder is told about an order (PRes and InqRes)."""
    payload = purchase_pb2.PResPayload()
    auth = order.authorization
    if order.state is OrderState.INITIATED:
        payload.completion_code = C.COMPLETION_CODE_ORDER_NOT_RECEIVED
        return payload
    if order.state in (OrderState.PURCHASED, OrderState.AUTHORIZING):
        payload.completion_code = C.COMPLETION_CODE_ORDER_RECEIVED
        return payload
    if order.state is OrderState.FAILED or auth is None:
        payload.completion_code = C.COMPLETION_CODE_ORDER_REJECTED
        return payload
    if order.state is OrderState.REVERSED:
        # The whole authorization given back (allowed only while nothing was captured):
        # the order will not be fulfilled. SET's CompletionCode has no "reversed"
        # (SET-PROTOCOL.md 5.6, 7.7); orderRejected says so, and no AuthCode is reported,
        # since no authorization stands: nothing held, captured or credited.
        payload.completion_code = C.COMPLETION_CODE_ORDER_REJECTED
        nothing = auth.amount.with_minor(0).to_proto()
        for amount in (payload.auth_amt, payload.captured_amt, payload.credited_amt):
            amount.CopyFrom(nothing)
        payload.acq_card_msg = auth.acq_card_msg
        return payload
    # Stored from a verified AuthRes, of a code this merchant defines: one it does not
    # leaves the order authorizing (``outcome.require_known``), "order received". A code
    # another release stored in the same database is passed on as it came.
    payload.auth_code = cast(authorization_pb2.AuthCode, auth.auth_code)
    payload.auth_amt.CopyFrom(auth.amount.to_proto())
    payload.acq_card_msg = auth.acq_card_msg
    if credited:
        payload.completion_code = C.COMPLETION_CODE_CREDIT_PERFORMED
    elif captured:
        payload.completion_code = C.COMPLETION_CODE_CAPTURE_PERFORMED
    else:
        payload.completion_code = C.COMPLETION_CODE_AUTHORIZATION_PERFORMED
    payload.captured_amt.CopyFrom(auth.amount.with_minor(captured).to_proto())
    payload.credited_amt.CopyFrom(auth.amount.with_minor(credited).to_proto())
    return payload


def settled_amounts(store: MerchantStore, xid: bytes) -> tuple[int, int]:
    """(captured, credited) minor units of an order, net of their reversals."""
    return settled_of(store.operations(xid))


def settled_of(operations: Sequence[Operation]) -> tuple[int, int]:
    """(captured, credited) minor units of an order's ``operations``, net of their
    reversals."""
    totals = dict.fromkeys(OperationKind, 0)
    for operation in operations:
        if operation.state is OperationState.SUCCEEDED:
            totals[operation.kind] += operation.result_amount
    captured = totals[OperationKind.CAPTURE] - totals[OperationKind.CAPTURE_REVERSAL]
    credited = totals[OperationKind.CREDIT] - totals[OperationKind.CREDIT_REVERSAL]
    return captured, credited


class Checkout:
    """Answers wallets: PInit, Purchase and Inquiry over the merchant's store."""

    def __init__(
        self,
        credentials: Credentials,
        trust: TrustStore,
        store: MerchantStore,
        gateway_keys: GatewayKeys,
        authorizer: Authorizer,
        revocation: RevocationFeed,
        brand_id: str,
        answer: AnswerMode,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        """``threads``: the server's, of which the Purchases waiting on the gateway hold
        no more than ``gateway_waits`` says."""
        self._credentials = credentials
        self._trust = trust
        self._store = store
        self._gateway_keys = gateway_keys
        self._authorizer = authorizer
        self._revocation = revocation
        self._brand_id = brand_id
        self._answer = answer
        self._threads = threads
        self._gateway_waits = threading.BoundedSemaphore(gateway_waits(threads))

    def _order(self, xid: bytes) -> Order:
        try:
            return self._store.order(xid)
        except UnknownOrder:
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "no order with this XID") from None

    def _payload(self, order: Order) -> purchase_pb2.PResPayload:
        captured, credited = settled_amounts(self._store, order.xid)
        return completion_of(order, captured, credited)

    def _with_current_revocation(
        self, check: Callable[[], VerifiedCertificate]
    ) -> VerifiedCertificate:
        """Run a chain check with current revocation data, fetching it again if stale."""
        self._revocation.ensure_fresh()
        try:
            return check()
        except RevocationUnavailable:
            self._revocation.refresh()
            return check()

    # -- PInit ------------------------------------------------------------------------

    def pinit(self, request: purchase_pb2.PInitRequest) -> purchase_pb2.PInitResponse:
        """PInitReq -> the merchant's signed offer naming the gateway key for the PI."""
        check_pinit_request(request)
        if request.brand_id != self._brand_id:
            raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "brand not accepted here")
        if not request.lid_m:
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "PInitReq names no order (LID-M)")
        try:
            offer = self._store.offer(request.lid_m)
        except UnknownOrder:
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "no order with this LID-M") from None
        if offer.brand_id != request.brand_id:
            raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "the order is for another brand")
        gateway = self._gateway_keys.current()
        xid, chall_m = new_id(), new_id()
        trans_ids = common_pb2.TransIDs(
            lid_c=request.lid_c, lid_m=request.lid_m, xid=xid, preq_date_unix_ms=now_ms(),
            language=request.language,
        )  # fmt: skip
        try:
            # The PInitRes is signed with the current signature certificate, which the PI
            # will name: its AuthReq must be signed under it, after a renewal too.
            self._store.open_order(
                request.lid_m, xid, trans_ids.SerializeToString(), chall_m,
                self._credentials.signature_thumb,
            )  # fmt: skip
        except OfferTaken as taken:
            # Declined or failed, it would have been offered again (another card): this
            # one holds money, or did. The log says how and which order; the wallet
            # hears UNKNOWN_LID alone, as for any refusal (SET-PROTOCOL.md 7.6).
            log.info(
                "PInit: order LID-M %s not offered again: its order %s is %s",
                short(request.lid_m), short(taken.xid), taken.state.value,
            )  # fmt: skip
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, f"this order {taken.reason}") from None
        except OfferUsedUp as used_up:
            # Declined or failed again and again: a cardholder out of cards, or someone
            # testing card numbers against it. A warning, for the merchant to decide.
            log.warning(
                "PInit: order LID-M %s not offered again: it %s",
                short(request.lid_m), used_up.reason,
            )  # fmt: skip
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, f"this order {used_up.reason}") from None
        log.info(
            "PInit: order LID-M %s offered as XID %s for %s",
            short(request.lid_m), short(xid), offer.amount,
        )  # fmt: skip
        return build_pinit_response(
            self._credentials, request, trans_ids, chall_m, gateway.key_exchange.der,
            gateway.chain,
        )  # fmt: skip

    # -- Purchase ---------------------------------------------------------------------

    def purchase(
        self, request: purchase_pb2.PurchaseRequest, *, answer_by: float | None = None
    ) -> purchase_pb2.PurchaseResponse:
        """PReq -> PRes: verify, keep the sealed PI, authorize now or in the background.

        ``answer_by`` (``time.monotonic()``): when the wallet must have its PRes; an
        authorization still waiting on the gateway then is answered "order received". So
        is one that finds ``gateway_waits`` Purchases waiting on the gateway for
        ``SLOT_WAIT_SECONDS``, and left to the worker: they never hold every thread of the
        server (from 3 threads)."""
        view = open_purchase_request(request)
        oi = view.oi_data
        order = self._order(oi.trans_ids.xid)
        if order.state is not OrderState.INITIATED:
            return self._repeated(order, view, "repeated")
        mine = MerchantOrder(
            order.trans_ids_proto(), order.chall_m, order.description, order.amount.to_proto(),
            order.brand_id,
        )  # fmt: skip
        cardholder = self._with_current_revocation(lambda: verify_purchase(view, mine, self._trust))
        try:
            order = self._store.record_purchase(
                order.xid, cardholder.thumbprint, view.oi_bytes, view.pi_bytes
            )
        except OrderStateError:
            # Another Purchase for this XID was recorded while this one was verified: the
            # same one sent twice at once (answered as a repeat), or a different one.
            return self._repeated(self._order(order.xid), view, "sent twice at once")
        except UnknownOrder:
            # A PInit for the same LID-M while this one was verified dropped the unpaid
            # order for a new XID: this XID is no longer known (SET-PROTOCOL.md 5.5).
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "no order with this XID") from None
        log.info(
            "Purchase %s: dual signature verified, cardholder %s; PI kept sealed for the gateway",
            order.short_id, cardholder.thumbprint.hex()[:8],
        )  # fmt: skip
        if self._answer is AnswerMode.AFTER_AUTHORIZATION and self._gateway_place(answer_by):
            try:
                # The worker's scan may have found the order purchased and sent it already.
                order = self._authorizer.authorize(order.xid, as_read=order, answer_by=answer_by)
            finally:
                self._gateway_waits.release()
        else:
            if self._answer is AnswerMode.AFTER_AUTHORIZATION:
                metrics.purchase_diverted()
                log.info(
                    "Purchase %s: %d Purchases wait on the gateway already; answered "
                    "order received, authorized in the background",
                    order.short_id, gateway_waits(self._threads),
                )  # fmt: skip
            self._authorizer.submit(order)
        return self._pres(order, oi.rrpid, oi.chall_c)

    def _gateway_place(self, answer_by: float | None) -> bool:
        """One of the ``gateway_waits`` places taken, waited for ``SLOT_WAIT_SECONDS`` at
        most and never past ``answer_by``; False when none came free."""
        wait = SLOT_WAIT_SECONDS
        if answer_by is not None:
            wait = max(0.0, min(wait, answer_by - time.monotonic()))
        return self._gateway_waits.acquire(timeout=wait)

    def _repeated(
        self, order: Order, view: MerchantView, how: str
    ) -> purchase_pb2.PurchaseResponse:
        """A PReq for an order already purchased: the same one again is answered with the
        order's current state (SET duplicates are not errors), another is refused."""
        if order.oi_data != view.oi_bytes or order.pi != view.pi_bytes:
            raise fail(
                ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED,
                f"this XID already holds another purchase, {order.state}",
            )
        log.info("Purchase %s %s: answering with its current state", order.short_id, how)
        return self._pres(order, view.oi_data.rrpid, view.oi_data.chall_c)

    def _pres(self, order: Order, rrpid: bytes, chall_c: bytes) -> purchase_pb2.PurchaseResponse:
        payload = self._payload(order)
        trans_ids = order.trans_ids_proto()
        signed = build_purchase_response(self._credentials, trans_ids, rrpid, chall_c, [payload])
        log.info(
            "PRes %s: %s", order.short_id,
            code_name(purchase_pb2.CompletionCode, payload.completion_code),
        )  # fmt: skip
        metrics.purchase_answered(payload.completion_code)
        return purchase_pb2.PurchaseResponse(
            header=header(rrpid=rrpid, xid=order.xid, lid_c=trans_ids.lid_c, lid_m=order.lid_m),
            p_res=signed,
        )

    # -- Inquiry ----------------------------------------------------------------------

    def inquiry(self, request: purchase_pb2.InquiryRequest) -> purchase_pb2.InquiryResponse:
        """InqReq -> InqRes: the order's state, to the cardholder who paid for it only."""
        order = self._order(inquiry_xid(request))
        if order.cardholder_thumb is None:
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "no purchase for this XID yet")
        thumb = order.cardholder_thumb
        self._revocation.ensure_fresh()
        try:
            data = open_inquiry_request(request, thumb, self._trust)
        except RevocationUnavailable:
            self._revocation.refresh()
            data = open_inquiry_request(request, thumb, self._trust)
        if data.trans_ids.SerializeToString() != order.trans_ids:
            raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "InqReq TransIDs differ")
        payload = self._payload(order)
        signed = build_purchase_response(
            self._credentials, order.trans_ids_proto(), data.rrpid, data.chall_c2, [payload]
        )
        log.info(
            "Inquiry %s: %s", order.short_id,
            code_name(purchase_pb2.CompletionCode, payload.completion_code),
        )  # fmt: skip
        return purchase_pb2.InquiryResponse(
            header=header(rrpid=data.rrpid, xid=order.xid, lid_m=order.lid_m), inq_res=signed
        )


def is_approved(order: Order) -> bool:
    """True when the order holds an approved authorization."""
    return order.authorization is not None and order.authorization.auth_code == APPROVED
