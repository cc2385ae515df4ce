"""After authorization: capture, refund and reversals (batches: ``batches``).

Each operation is checked against what the merchant knows (never capture more than is
authorized, never refund more than was captured; one sent and not answered counts as
applied wherever that leaves less to take, and the error names it), built by setcore,
stored with its exact bytes, then sent; the gateway's verified answer settles it, and a
verified SET Error ends it "failed", with the error's code. Anything else leaves its
outcome unknown (``outcome``: no answer, a crash, an answer or Error that does not
verify, an answer settling another amount, UNSPECIFIED_FAILURE, the merchant's own key
backend or store failing on the answer): it stays "sent", the command that sent it gets
``OutcomeUnknown`` ("outcome unknown, will retry"), and ``resume`` sends the same bytes
again, when a merchant starts serving and every ``runtime.RESUME_SECONDS`` while it
serves: the gateway's RRPID idempotency makes that safe. A verified refusal as too old
(MESSAGE_TOO_OLD) of a request stored too recently for ``renewal`` to let it be built
afresh leaves it sent too; one stored long enough ago is built afresh under a new RRPID
and sent (``renewal`` says why that is safe, and when). That life, a batch change's
too, is written once, in ``stored_requests``.

One item per request: the merchant's operations are driven one order at a time (CLI,
demo), and a failed item then never holds up others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clients.errors import OrderStateError
from clients.merchant.checkout import is_approved, settled_amounts
from clients.merchant.records import (
    Money,
    Operation,
    OperationKind,
    OperationState,
    Order,
    OrderState,
    short,
)
from clients.merchant.store import MerchantStore
from clients.merchant.stored_requests import StoredRequests
from setcore.amount import same_unit
from setcore.auth_reversal import (
    AuthRevRequestState,
    build_auth_reversal_request,
)
from setcore.cap_rev_or_cred import (
    CAPTURE_REVERSAL,
    CREDIT,
    CREDIT_REVERSAL,
    CapRevOrCredItem,
    CapRevOrCredResult,
    CapRevOrCredState,
    build_capture_reversal_request,
    build_credit_request,
    build_credit_reversal_request,
)
from setcore.capture import (
    CaptureItem,
    CaptureState,
    ItemRef,
    build_capture_request,
)
from setcore.errors import ErrorCode, fail
from setpay.v1 import authorization_pb2, capture_pb2, common_pb2

log = logging.getLogger("setpay.merchant")

CAP_SUCCESS = authorization_pb2.CAP_CODE_SUCCESS
CAP_REV_OR_CRED_SUCCESS = capture_pb2.CAP_REV_OR_CRED_CODE_SUCCESS
AUTH_REV_APPROVED = authorization_pb2.AUTH_REV_CODE_APPROVED
_BUILD = {
    OperationKind.CAPTURE_REVERSAL: build_capture_reversal_request,
    OperationKind.CREDIT: build_credit_request,
    OperationKind.CREDIT_REVERSAL: build_credit_reversal_request,
}
# The SET message each kind of operation is sent as, for the log.
_REQUEST_NAME = {
    OperationKind.CAPTURE: "CapReq",
    OperationKind.CAPTURE_REVERSAL: "CapRevReq",
    OperationKind.CREDIT: "CredReq",
    OperationKind.CREDIT_REVERSAL: "CredRevReq",
    OperationKind.AUTH_REVERSAL: "AuthRevReq",
}
_KIND_OF = {
    OperationKind.CAPTURE_REVERSAL: CAPTURE_REVERSAL,
    OperationKind.CREDIT: CREDIT,
    OperationKind.CREDIT_REVERSAL: CREDIT_REVERSAL,
}


class Settlement(StoredRequests[Operation]):
    """Capture, refund and reverse authorized orders."""

    noun = "operations"

    def _authorized(self, xid: bytes) -> Order:
        order = self._store.order(xid)
        if order.state is not OrderState.AUTHORIZED or not is_approved(order):
            raise OrderStateError(f"order {order.short_id} is {order.state.value}, not authorized")
        return order

    def _pending(self, xid: bytes, *kinds: OperationKind) -> list[Operation]:
        """The order's operations of ``kinds`` sent and not answered. Each may have been
        applied: every check counts it as applied where that leaves less to take, so no
        request is sent that the gateway would refuse should those turn out applied, in
        whichever order they reach it."""
        return [
            op
            for op in self._store.operations(xid)
            if op.kind in kinds and op.state is OperationState.SENT
        ]

    # -- capture ----------------------------------------------------------------------

    def capture(self, xid: bytes, amount: int | None = None) -> Operation:
        """Capture ``amount`` (default: all that is authorized and not yet captured)."""
        order = self._authorized(xid)
        assert order.authorization is not None and order.auth_rrpid is not None
        captured = _captured_gross(self._store, xid)
        pending = self._pending(xid, OperationKind.CAPTURE, OperationKind.AUTH_REVERSAL)
        # A pending reversal may have lowered the authorization to what it keeps.
        authorized = min(
            [order.authorization.amount.minor]
            + [op.amount.minor for op in pending if op.kind is OperationKind.AUTH_REVERSAL]
        )
        taken = sum(op.amount.minor for op in pending if op.kind is OperationKind.CAPTURE)
        left = max(0, authorized - captured - taken)
        amount = left if amount is None else amount
        if not 0 < amount <= left:
            raise OrderStateError(
                f"order {order.short_id}: {amount} cannot be captured ({left} left to capture)"
                f"{_counted(pending)}"
            )
        return self._start(
            order, OperationKind.CAPTURE, order.authorization.amount.with_minor(amount)
        )

    # -- refunds and reversals --------------------------------------------------------

    def _refundable(self, xid: bytes) -> tuple[int, list[Operation]]:
        """What is captured and not refunded, counting pending refunds and capture
        reversals as applied; and those pending ones."""
        captured, credited = settled_amounts(self._store, xid)
        pending = self._pending(xid, OperationKind.CREDIT, OperationKind.CAPTURE_REVERSAL)
        return max(0, captured - credited - sum(op.amount.minor for op in pending)), pending

    def refund(self, xid: bytes, amount: int | None = None) -> Operation:
        """Credit ``amount`` back to the cardholder (default: all captured, not yet credited)."""
        order = self._authorized(xid)
        left, pending = self._refundable(xid)
        amount = left if amount is None else amount
        if not 0 < amount <= left:
            raise OrderStateError(
                f"order {order.short_id}: {amount} cannot be refunded ({left} captured "
                f"and not refunded){_counted(pending)}"
            )
        return self._cap_rev_or_cred(order, OperationKind.CREDIT, amount)

    def reverse_capture(self, capture_rrpid: bytes) -> Operation:
        """Undo a capture, named by the RRPID of its capture request."""
        capture = self._store.operation(capture_rrpid)
        if (
            capture.kind is not OperationKind.CAPTURE
            or capture.state is not OperationState.SUCCEEDED
        ):
            raise OrderStateError(f"operation {short(capture_rrpid)} is not a completed capture")
        self._not_reversed(capture, OperationKind.CAPTURE_REVERSAL)
        order = self._authorized(capture.xid)
        left, pending = self._refundable(capture.xid)
        if capture.result_amount > left:
            raise OrderStateError(
                f"order {order.short_id}: {left} captured and not refunded; this capture was "
                f"{capture.result_amount}{_counted(pending)}"
            )
        return self._cap_rev_or_cred(
            order, OperationKind.CAPTURE_REVERSAL, capture.result_amount, original=capture_rrpid
        )

    def reverse_credit(self, credit_rrpid: bytes) -> Operation:
        """Undo a refund, named by the RRPID of its credit request."""
        credit = self._store.operation(credit_rrpid)
        if credit.kind is not OperationKind.CREDIT or credit.state is not OperationState.SUCCEEDED:
            raise OrderStateError(f"operation {short(credit_rrpid)} is not a completed refund")
        self._not_reversed(credit, OperationKind.CREDIT_REVERSAL)
        order = self._authorized(credit.xid)
        return self._cap_rev_or_cred(
            order, OperationKind.CREDIT_REVERSAL, credit.result_amount, original=credit_rrpid
        )

    def _not_reversed(self, original: Operation, reversal: OperationKind) -> None:
        for op in self._store.operations(original.xid):
            if op.kind is not reversal or op.original_rrpid != original.rrpid:
                continue
            if op.state is OperationState.SUCCEEDED:
                raise OrderStateError(f"operation {short(original.rrpid)} is already reversed")
            if op.state is OperationState.SENT:
                raise OrderStateError(
                    f"operation {short(original.rrpid)} is already being reversed{_counted([op])}"
                )

    def _cap_rev_or_cred(
        self, order: Order, kind: OperationKind, amount: int, original: bytes = b""
    ) -> Operation:
        assert order.authorization is not None
        return self._start(order, kind, order.authorization.amount.with_minor(amount), original)

    def reverse_authorization(self, xid: bytes, keep: int = 0) -> Operation:
        """Release the authorization down to ``keep`` (0: release all of it)."""
        order = self._authorized(xid)
        assert order.authorization is not None and order.auth_rrpid is not None
        captured = _captured_gross(self._store, xid)
        # A pending capture may have been applied (then the order has a capture), a pending
        # reversal may have lowered the authorization below ``keep``: either way the
        # gateway would refuse this one, or, sent first, this one would see theirs refused.
        pending = self._pending(xid, OperationKind.CAPTURE, OperationKind.AUTH_REVERSAL)
        if pending:
            raise OrderStateError(
                f"order {order.short_id} cannot be reversed before the gateway answers "
                f"what is pending{_counted(pending)}"
            )
        if not captured <= keep < order.authorization.amount.minor:
            raise OrderStateError(
                f"order {order.short_id}: keep must be at least the {captured} captured "
                f"(a capture reversal does not give authorization back) and below "
                f"{order.authorization.amount.minor}"
            )
        money = order.authorization.amount.with_minor(keep)
        return self._start(order, OperationKind.AUTH_REVERSAL, money)

    # -- building, sending and resuming ------------------------------------------------

    def _start(
        self, order: Order, kind: OperationKind, money: Money, original: bytes = b""
    ) -> Operation:
        """Build the request, store it, then send it."""
        wire, rrpid, digest = self._request(order, kind, money, original)
        operation = self._store.add_operation(
            order.xid, kind, rrpid, money, wire, digest, original or None
        )
        log.info("order %s: %s %s for %s", order.short_id, _REQUEST_NAME[kind], short(rrpid), money)
        return self._send(operation)

    def _request(
        self, order: Order, kind: OperationKind, money: Money, original: bytes
    ) -> tuple[bytes, bytes, bytes]:
        """``kind``'s request on ``order``, built by setcore: (wire bytes, RRPID, digest)."""
        assert order.authorization is not None and order.auth_rrpid is not None
        token = order.authorization.cap_token
        recipient = self._keys.recipient()
        if kind is OperationKind.AUTH_REVERSAL:
            rev, rev_state = build_auth_reversal_request(
                self._credentials, recipient, order.trans_ids_proto(), order.auth_rrpid, token,
                money.to_proto(), self._merchant_id,
            )  # fmt: skip
            return rev.SerializeToString(), rev_state.rrpid, rev_state.request_digest
        if kind is OperationKind.CAPTURE:
            item = CaptureItem(order.trans_ids_proto(), order.auth_rrpid, token, money.to_proto())
            cap, cap_state = build_capture_request(
                self._credentials, recipient, [item], self._merchant_id
            )
            return cap.SerializeToString(), cap_state.rrpid, cap_state.request_digest
        entry = CapRevOrCredItem(
            order.trans_ids_proto(), order.auth_rrpid, token, money.to_proto(),
            original_rrpid=original,
        )  # fmt: skip
        request, state = _BUILD[kind](self._credentials, recipient, [entry], self._merchant_id)
        return request.SerializeToString(), state.rrpid, state.request_digest

    def _fail(self, request: Operation, error_code: int) -> Operation:
        return self._store.fail_operation(request.rrpid, error_code)

    def _rebuild(self, request: Operation, error_code: int) -> Operation | None:
        order = self._store.order(request.xid)
        if order.state is not OrderState.AUTHORIZED:
            return None  # reversed meanwhile: nothing left to build it on
        wire, rrpid, digest = self._request(
            order, request.kind, request.amount, request.original_rrpid or b""
        )
        return self._store.renew_operation(request, error_code, rrpid, wire, digest)

    def _unanswered(self) -> list[Operation]:
        return [op for op in self._store.operations() if op.state is OperationState.SENT]

    def _named(self, request: Operation) -> str:
        return _named(request)

    def _exchange(self, operation: Operation) -> Operation:
        """Send the operation's stored bytes; save the gateway's verified answer."""
        order = self._store.order(operation.xid)
        assert order.auth_rrpid is not None
        refs = (ItemRef(order.xid, order.auth_rrpid),)
        wire = operation.request
        if operation.kind is OperationKind.CAPTURE:
            cap = self._gateway.capture(
                wire, CaptureState(operation.rrpid, operation.request_digest, refs)
            )
            payload = cap.items[0].cap_res_payload
            _check_answered_amount(operation, payload.cap_amt)
            return self._settle(
                operation, payload.cap_code == CAP_SUCCESS, payload.cap_code,
                payload.cap_amt.amount, payload.batch_id,
                authorization_pb2.CapCode.Name(payload.cap_code),
            )  # fmt: skip
        if operation.kind is OperationKind.AUTH_REVERSAL:
            rev = self._gateway.reverse_authorization(
                wire, AuthRevRequestState(operation.rrpid, order.xid, operation.request_digest)
            )
            # The operation's end and the order's new authorization are saved together:
            # a crash between two writes would leave a reversal that resume cannot finish.
            kept = rev.data.auth_new_amt.amount
            if rev.auth_rev_code == AUTH_REV_APPROVED:
                _check_answered_amount(operation, rev.data.auth_new_amt, exact=True)
            settled = self._store.settle_auth_reversal(
                operation.rrpid, rev.auth_rev_code == AUTH_REV_APPROVED, rev.auth_rev_code,
                kept, rev.baggage.cap_token_new,
            )  # fmt: skip
            self._log_answer(settled, authorization_pb2.AuthRevCode.Name(rev.auth_rev_code))
            return settled
        state = CapRevOrCredState(
            _KIND_OF[operation.kind], operation.rrpid, operation.request_digest, refs
        )
        send = {
            OperationKind.CAPTURE_REVERSAL: self._gateway.reverse_capture,
            OperationKind.CREDIT: self._gateway.credit,
            OperationKind.CREDIT_REVERSAL: self._gateway.reverse_credit,
        }[operation.kind]
        result: CapRevOrCredResult = send(wire, state)
        item = result.items[0]
        _check_answered_amount(operation, item.actual_amt)
        return self._settle(
            operation, item.code == CAP_REV_OR_CRED_SUCCESS, item.code, item.actual_amt.amount,
            item.batch_id, capture_pb2.CapRevOrCredCode.Name(item.code),
        )  # fmt: skip

    def _settle(
        self, operation: Operation, ok: bool, code: int, amount: int, batch_id: str, name: str
    ) -> Operation:
        settled = self._store.settle_operation(operation.rrpid, ok, code, amount, batch_id)
        self._log_answer(settled, name)
        return settled

    @staticmethod
    def _log_answer(operation: Operation, name: str) -> None:
        log.info(
            "order %s: %s %s answered %s, %d%s",
            short(operation.xid), operation.kind.value, short(operation.rrpid), name,
            operation.result_amount,
            f" in batch {operation.batch_id}" if operation.batch_id else "",
        )  # fmt: skip


def _named(operation: Operation) -> str:
    """An operation for the log and the command line: its kind, its id, its order."""
    return f"{operation.kind.value} {short(operation.rrpid)} for order {short(operation.xid)}"


def _captured_gross(store: MerchantStore, xid: bytes) -> int:
    """Every capture of the order that succeeded, its reversals not deducted: the gateway
    counts captures against the authorization gross (``gateway.ledger.holds``), so a
    capture reversal gives money back to the cardholder, not authorization back to
    capture again or to release."""
    return sum(
        op.result_amount
        for op in store.operations(xid)
        if op.kind is OperationKind.CAPTURE and op.state is OperationState.SUCCEEDED
    )


def _counted(pending: Sequence[Operation]) -> str:
    """For an error: the unanswered operations a check counted as applied, by short id."""
    if not pending:
        return ""
    named = ", ".join(
        f"{op.kind.value} {short(op.rrpid)} "
        f"{'keeping' if op.kind is OperationKind.AUTH_REVERSAL else 'of'} {op.amount.minor}"
        for op in pending
    )
    return f"; pending, counted as applied: {named} (sent, outcome unknown, will retry)"


def _check_answered_amount(
    operation: Operation, got: common_pb2.CurrencyAmount, *, exact: bool = False
) -> None:
    """Refuse (``ProtocolError``: the operation stays sent, outcome unknown) an answer that
    settles more than was asked, in another unit, or (``exact``) another amount than was
    asked."""
    asked = operation.amount.to_proto()
    if (
        not same_unit(got, asked)
        or not 0 <= got.amount <= asked.amount
        or (exact and got.amount != asked.amount)
    ):
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"the answer to {_REQUEST_NAME[operation.kind]} {short(operation.rrpid)} gives "
            f"{got.amount} ({got.currency}, exponent {got.exp10}) for {operation.amount}",
        )


def operations_summary(operations: Sequence[Operation]) -> list[str]:
    """One line per operation for people (no ids longer than 8 hex digits)."""
    return [
        f"{short(op.rrpid)} {op.kind.value:<16} {op.amount.minor:>10} {op.state.value:<9} "
        f"{op.batch_id or '-'}"
        for op in operations
    ]
