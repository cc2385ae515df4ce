"""After authorization: capture, refund and reversals (batches: ``batches``).

Each operation is checked against what the merchant knows (``settlement_checks``: never
capture more than is authorized, never refund more than was captured; one sent and not
answered counts as applied wherever that leaves less to take, and the error names it),
built by setcore, and stored with its exact bytes if the same check, run again in the
storing transaction, still allows it: two commands at once (two threads, or a command
beside a serving merchant on the same file) never both pass it, and the second is
refused as it would be after the first. Then it is sent; the gateway's verified answer
settles it (succeeded on its success code alone; any other code this build defines is a
refusal, recorded with its code), and a verified SET Error ends it "failed", with the
error's code. Anything else leaves its outcome unknown (``outcome``: no answer, a crash,
an answer or Error that does not verify, an answer settling another amount, a result
code of a later release, which may say the capture or refund was taken, asked again
less and less often until the merchant is upgraded to read it, UNSPECIFIED_FAILURE or
an Error code this build does not define, the merchant's own key backend or store
failing on the answer): it stays "sent", the command that sent it gets
``OutcomeUnknown`` ("outcome unknown, will retry"), and ``resume`` sends the same bytes
again, when a merchant starts serving and every ``runtime.RESUME_SECONDS`` while it
serves: the gateway's RRPID idempotency makes that safe. A verified refusal as too old
(MESSAGE_TOO_OLD) of a request stored too recently for ``renewal`` to let it be built
afresh leaves it sent too; one stored long enough ago is built afresh under a new RRPID
and sent (``renewal`` says why that is safe, and when), but for one the gateway answered
before with a code this build cannot read: it decided those bytes. That life, an
authorization's and a batch change's too, is written once, in ``stored_requests``.

One item per request: the merchant's operations are driven one order at a time (CLI,
demo), and a failed item then never holds up others.
"""

from __future__ import annotations

import logging

from clients.errors import OrderStateError
from clients.merchant import outcome
from clients.merchant import settlement_checks as checks
from clients.merchant.records import (
    Money,
    Operation,
    OperationKind,
    OperationState,
    Order,
    OrderState,
    short,
)
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
from setcore.enum_names import code_name
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
# How many times a command checks and builds its request when, each time, another
# command on the same order changed it between the check and the storing in a way that
# changes the request (took part of a default amount, replaced the capture token). Each
# such change is another command's operation stored first; one that keeps losing that
# race three times over is better given again than spun on.
MAX_BUILDS = 3


class _Changed(Exception):
    """The order changed, between a command's check and its storing, so that the request
    built after the check is no longer the one the check asks for."""


class Settlement(StoredRequests[Operation]):
    """Capture, refund and reverse authorized orders."""

    noun = "operations"

    def capture(self, xid: bytes, amount: int | None = None) -> Operation:
        """Capture ``amount`` (default: all that is authorized and not yet captured)."""
        return self._start(xid, lambda order, ops: checks.capture(order, ops, amount))

    def refund(self, xid: bytes, amount: int | None = None) -> Operation:
        """Credit ``amount`` back to the cardholder (default: all captured, not yet credited)."""
        return self._start(xid, lambda order, ops: checks.refund(order, ops, amount))

    def reverse_capture(self, capture_rrpid: bytes) -> Operation:
        """Undo a capture, named by the RRPID of its capture request."""
        xid = self._store.operation(capture_rrpid).xid
        return self._start(
            xid, lambda order, ops: checks.reverse_capture(order, ops, capture_rrpid)
        )

    def reverse_credit(self, credit_rrpid: bytes) -> Operation:
        """Undo a refund, named by the RRPID of its credit request."""
        xid = self._store.operation(credit_rrpid).xid
        return self._start(xid, lambda order, ops: checks.reverse_credit(order, ops, credit_rrpid))

    def reverse_authorization(self, xid: bytes, keep: int = 0) -> Operation:
        """Release the authorization down to ``keep`` (0: release all of it)."""
        return self._start(xid, lambda order, ops: checks.reverse_authorization(order, ops, keep))

    # -- building, sending and resuming ------------------------------------------------

    def _start(self, xid: bytes, check: checks.Check) -> Operation:
        """Check, build the request, store it, then send it.

        The request is built (signed, sealed to the gateway, whose certificates may have
        to be fetched first) outside the store's write lock, which every other writer of
        the file waits for; the check runs again in the transaction that stores it, so
        two commands at once never both pass it: the second gets the refusal it would
        have got after the first. An order changed in between so that the request is no
        longer the one its check asks for is checked and built again.
        """
        for _ in range(MAX_BUILDS):
            try:
                operation = self._stored(xid, check)
            except _Changed:
                continue
            return self._send(operation)
        raise OrderStateError(
            f"order {short(xid)} changed at every try while a request on it was built "
            f"({MAX_BUILDS} tries): give the command again"
        )

    def _stored(self, xid: bytes, check: checks.Check) -> Operation:
        """The request ``check`` allows, built and stored; ``_Changed`` if the order no
        longer allows that one when it is stored."""
        order = self._store.order(xid)
        plan = check(order, self._store.operations(xid))
        wire, rrpid, digest = self._request(order, plan.kind, plan.money, plan.original)

        def admit(now: Order, operations: list[Operation]) -> None:
            # Refused as ``check`` refuses; a request built on a capture token or an
            # authorization since replaced, or for another default amount, is not stored.
            allowed = check(now, operations)
            if allowed != plan or (now.auth_rrpid, now.authorization) != (
                order.auth_rrpid, order.authorization,
            ):  # fmt: skip
                raise _Changed

        operation = self._store.add_operation(
            xid, plan.kind, rrpid, plan.money, wire, digest, plan.original or None, admit=admit
        )
        log.info(
            "order %s: %s %s for %s",
            short(xid), _REQUEST_NAME[plan.kind], short(rrpid), plan.money,
        )  # fmt: skip
        return operation

    def _request(
        self, order: Order, kind: OperationKind, money: Money, original: bytes
    ) -> tuple[bytes, bytes, bytes]:
        """``kind``'s request on ``order``, built by setcore: (wire bytes, RRPID, digest)."""
        token = checks.approved_authorization(order).cap_token
        auth_rrpid = checks.auth_rrpid(order)
        recipient = self._keys.recipient()
        if kind is OperationKind.AUTH_REVERSAL:
            rev, rev_state = build_auth_reversal_request(
                self._credentials, recipient, order.trans_ids_proto(), auth_rrpid, token,
                money.to_proto(), self._merchant_id,
            )  # fmt: skip
            return rev.SerializeToString(), rev_state.rrpid, rev_state.request_digest
        if kind is OperationKind.CAPTURE:
            item = CaptureItem(order.trans_ids_proto(), auth_rrpid, token, money.to_proto())
            cap, cap_state = build_capture_request(
                self._credentials, recipient, [item], self._merchant_id
            )
            return cap.SerializeToString(), cap_state.rrpid, cap_state.request_digest
        entry = CapRevOrCredItem(
            order.trans_ids_proto(), auth_rrpid, token, money.to_proto(),
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
        return self._store.operations(state=OperationState.SENT)

    def _named(self, request: Operation) -> str:
        return _named(request)

    def _exchange(self, operation: Operation) -> Operation:
        """Send the operation's stored bytes; save the gateway's verified answer."""
        order = self._store.order(operation.xid)
        refs = (ItemRef(order.xid, checks.auth_rrpid(order)),)
        wire = operation.request
        if operation.kind is OperationKind.CAPTURE:
            cap = self._gateway.capture(
                wire, CaptureState(operation.rrpid, operation.request_digest, refs)
            )
            payload = cap.items[0].cap_res_payload
            _check_answered_amount(operation, payload.cap_amt)
            outcome.require_known(authorization_pb2.CapCode, payload.cap_code)
            return self._settle(
                operation, payload.cap_code == CAP_SUCCESS, payload.cap_code,
                payload.cap_amt.amount, payload.batch_id,
                code_name(authorization_pb2.CapCode, payload.cap_code),
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
            outcome.require_known(authorization_pb2.AuthRevCode, rev.auth_rev_code)
            settled = self._store.settle_auth_reversal(
                operation.rrpid, rev.auth_rev_code == AUTH_REV_APPROVED, rev.auth_rev_code,
                kept, rev.baggage.cap_token_new,
            )  # fmt: skip
            self._log_answer(settled, code_name(authorization_pb2.AuthRevCode, rev.auth_rev_code))
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
        outcome.require_known(capture_pb2.CapRevOrCredCode, item.code)
        return self._settle(
            operation, item.code == CAP_REV_OR_CRED_SUCCESS, item.code, item.actual_amt.amount,
            item.batch_id, code_name(capture_pb2.CapRevOrCredCode, item.code),
        )  # fmt: skip

    def _settle(
        self, operation: Operation, ok: bool, code: int, amount: int, batch_id: str, name: str
    ) -> Operation:
        settled = self._store.settle_operation(operation.rrpid, ok, code, amount, batch_id)
        self._log_answer(settled, name)
        return settled

    @staticmethod
    def _log_answer(operation: Operation, name: str) -> None:
        # The amount in its currency, as the request's line gives it ("3000 (978)"): a
        # bare "3000" beside "for 3000 (978)" read as 3000 euros (``cli.story``'s demo
        # tells both as "30.00 EUR").
        log.info(
            "order %s: %s %s answered %s, %s%s",
            short(operation.xid), operation.kind.value, short(operation.rrpid), name,
            operation.amount.with_minor(operation.result_amount),
            f" in batch {operation.batch_id}" if operation.batch_id else "",
        )  # fmt: skip


def _named(operation: Operation) -> str:
    """An operation for the log and the command line: its kind, its id, its order."""
    return f"{operation.kind.value} {short(operation.rrpid)} for order {short(operation.xid)}"


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
