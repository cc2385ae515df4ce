"""What a settlement command may send: its checks on an order and its operations.

Never capture more than is authorized, never refund more than was captured, never
reverse twice; one operation sent and not answered counts as applied wherever that leaves
less to take, and the refusal names it (``_pending``). A capture or refund is refused
outright while one of its kind on the order is unanswered (``_one_at_a_time``): the same
command given again after "outcome unknown" would otherwise send a second request, under
a new RRPID, beside the first that ``resume`` still sends, and the gateway applies both.

Each check is a plain function of the order and its operations as they stand, so
``settlement`` runs it twice: before it builds the request, and again in the transaction
that stores it (the ``admit`` of ``add_operation``), where two commands at once cannot
both pass it.

A refusal is ``OrderStateError``, naming what stands in the way by short ids; an
authorized order without the RRPID of its AuthReq, which every request on it names, is a
damaged file: ``StoreError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clients.errors import OrderStateError, StoreError
from clients.merchant.checkout import is_approved, settled_of
from clients.merchant.records import (
    Authorization,
    Money,
    Operation,
    OperationKind,
    OperationState,
    Order,
    OrderState,
    short,
)


@dataclass(frozen=True)
class Plan:
    """What a check allows: the operation to build, store and send."""

    kind: OperationKind
    money: Money
    original: bytes = b""


Check = Callable[[Order, list[Operation]], Plan]
"""A command's check, bound to its arguments: what it may send on the order, or
``OrderStateError`` naming why not."""


def capture(order: Order, operations: list[Operation], amount: int | None) -> Plan:
    """Capture ``amount`` (None: all that is authorized and not yet captured)."""
    authorization = approved_authorization(order)
    _one_at_a_time(order, operations, OperationKind.CAPTURE)
    captured = _captured_gross(operations)
    pending = _pending(operations, OperationKind.CAPTURE, OperationKind.AUTH_REVERSAL)
    # A pending reversal may have lowered the authorization to what it keeps.
    authorized = min(
        [authorization.amount.minor]
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
    return Plan(OperationKind.CAPTURE, authorization.amount.with_minor(amount))


def refund(order: Order, operations: list[Operation], amount: int | None) -> Plan:
    """Credit ``amount`` back (None: all captured and not yet credited)."""
    authorization = approved_authorization(order)
    _one_at_a_time(order, operations, OperationKind.CREDIT)
    left, pending = _refundable(operations)
    amount = left if amount is None else amount
    if not 0 < amount <= left:
        raise OrderStateError(
            f"order {order.short_id}: {amount} cannot be refunded ({left} captured "
            f"and not refunded){_counted(pending)}"
        )
    return Plan(OperationKind.CREDIT, authorization.amount.with_minor(amount))


def reverse_capture(order: Order, operations: list[Operation], capture_rrpid: bytes) -> Plan:
    """Undo the capture whose request had ``capture_rrpid``."""
    capture = _named_in(operations, capture_rrpid)
    if capture.kind is not OperationKind.CAPTURE or capture.state is not OperationState.SUCCEEDED:
        raise OrderStateError(f"operation {short(capture_rrpid)} is not a completed capture")
    _not_reversed(capture, operations, OperationKind.CAPTURE_REVERSAL)
    authorization = approved_authorization(order)
    left, pending = _refundable(operations)
    if capture.result_amount > left:
        raise OrderStateError(
            f"order {order.short_id}: {left} captured and not refunded; this capture was "
            f"{capture.result_amount}{_counted(pending)}"
        )
    money = authorization.amount.with_minor(capture.result_amount)
    return Plan(OperationKind.CAPTURE_REVERSAL, money, capture_rrpid)


def reverse_credit(order: Order, operations: list[Operation], credit_rrpid: bytes) -> Plan:
    """Undo the refund whose request had ``credit_rrpid``."""
    credit = _named_in(operations, credit_rrpid)
    if credit.kind is not OperationKind.CREDIT or credit.state is not OperationState.SUCCEEDED:
        raise OrderStateError(f"operation {short(credit_rrpid)} is not a completed refund")
    _not_reversed(credit, operations, OperationKind.CREDIT_REVERSAL)
    money = approved_authorization(order).amount.with_minor(credit.result_amount)
    return Plan(OperationKind.CREDIT_REVERSAL, money, credit_rrpid)


def reverse_authorization(order: Order, operations: list[Operation], keep: int) -> Plan:
    """Release the authorization down to ``keep`` (0: all of it)."""
    authorization = approved_authorization(order)
    captured = _captured_gross(operations)
    # A pending capture may have been applied (then the order has a capture), a pending
    # reversal may have lowered the authorization below ``keep``: either way the gateway
    # would refuse this one, or, sent first, this one would see theirs refused.
    pending = _pending(operations, OperationKind.CAPTURE, OperationKind.AUTH_REVERSAL)
    if pending:
        raise OrderStateError(
            f"order {order.short_id} cannot be reversed before the gateway answers "
            f"what is pending{_counted(pending)}"
        )
    if not captured <= keep < authorization.amount.minor:
        raise OrderStateError(
            f"order {order.short_id}: keep must be at least the {captured} captured "
            f"(a capture reversal does not give authorization back) and below "
            f"{authorization.amount.minor}"
        )
    return Plan(OperationKind.AUTH_REVERSAL, authorization.amount.with_minor(keep))


def approved_authorization(order: Order) -> Authorization:
    """The order's approved authorization; ``OrderStateError`` if it has none,
    ``StoreError`` if it lacks the RRPID a request on it would name (``auth_rrpid``)."""
    authorization = order.authorization
    if authorization is None or order.state is not OrderState.AUTHORIZED or not is_approved(order):
        raise OrderStateError(f"order {order.short_id} is {order.state.value}, not authorized")
    auth_rrpid(order)
    return authorization


def auth_rrpid(order: Order) -> bytes:
    """The RRPID of the AuthReq the order's authorization answered, which every request on
    it names; ``StoreError`` if it has none: setpay stores it with the AuthReq, before
    any authorization (``record_auth_request``), so the file was changed or damaged."""
    if order.auth_rrpid is None:
        raise StoreError(
            f"merchant database damaged: order {order.short_id} is {order.state.value} "
            "without the RRPID of its AuthReq"
        )
    return order.auth_rrpid


def _named_in(operations: Sequence[Operation], rrpid: bytes) -> Operation:
    """The operation with this RRPID among an order's."""
    (found,) = [op for op in operations if op.rrpid == rrpid]
    return found


def _pending(operations: Sequence[Operation], *kinds: OperationKind) -> list[Operation]:
    """The order's operations of ``kinds`` sent and not answered. Each may have been
    applied: every check counts it as applied where that leaves less to take, so no
    request is sent that the gateway would refuse should those turn out applied, in
    whichever order they reach it."""
    return [op for op in operations if op.kind in kinds and op.state is OperationState.SENT]


def _one_at_a_time(order: Order, operations: Sequence[Operation], kind: OperationKind) -> None:
    """Refuse a capture or refund while one of that ``kind`` on the order is unanswered.

    Its command ended "outcome unknown" (or is still waiting for the gateway), and the
    operator's first reaction is the same command again: built afresh, that is a second
    request beside the first, which ``resume`` still sends, and the gateway applies both
    (a refund paid twice). Sending the pending one's bytes again instead, as a batch
    change given again does, would answer a second refund of the same amount, really
    wanted, with the first one's answer, as if it were made. So nothing is built until
    the gateway answers the pending one (``serve`` sends it again); a second one really
    wanted is given again then.
    Reversals need no such rule: each names its original, and ``_not_reversed`` refuses a
    second one of it; an authorization reversal waits for every pending capture and
    reversal already.
    """
    pending = _pending(operations, kind)
    if pending:
        raise OrderStateError(
            f"order {order.short_id}: {_named_list(pending)} is sent and not answered "
            "(outcome unknown, will retry): `setpay merchant serve` sends it again, and the "
            f"gateway applies it once; no other {kind.value} is sent on this order until "
            "it is answered"
        )


def _named_list(operations: Sequence[Operation]) -> str:
    return ", ".join(f"{op.kind.value} {short(op.rrpid)} of {op.amount.minor}" for op in operations)


def _refundable(operations: Sequence[Operation]) -> tuple[int, list[Operation]]:
    """What is captured and not refunded, counting pending refunds and capture reversals
    as applied; and those pending ones."""
    captured, credited = settled_of(operations)
    pending = _pending(operations, OperationKind.CREDIT, OperationKind.CAPTURE_REVERSAL)
    return max(0, captured - credited - sum(op.amount.minor for op in pending)), pending


def _not_reversed(
    original: Operation, operations: Sequence[Operation], reversal: OperationKind
) -> None:
    for op in operations:
        if op.kind is not reversal or op.original_rrpid != original.rrpid:
            continue
        if op.state is OperationState.SUCCEEDED:
            raise OrderStateError(f"operation {short(original.rrpid)} is already reversed")
        if op.state is OperationState.SENT:
            raise OrderStateError(
                f"operation {short(original.rrpid)} is already being reversed{_counted([op])}"
            )


def _captured_gross(operations: Sequence[Operation]) -> int:
    """Every capture of the order that succeeded, its reversals not deducted: the gateway
    counts captures against the authorization gross (``gateway.ledger.holds``), so a
    capture reversal gives money back to the cardholder, not authorization back to
    capture again or to release."""
    return sum(
        op.result_amount
        for op in operations
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
