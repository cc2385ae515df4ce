"""Reconciling a settlement batch: the gateway's BatchStatus against the merchant's books.

SET's BatchStatus (SET-PROTOCOL.md 7.5) is there for merchant and acquirer to reconcile:
for each kind of settlement transaction filed in a batch, how many and how much. The
merchant keeps every capture, refund and reversal the gateway answered, with the batch the
answer filed it in; what it counts for a batch is those that succeeded in that batch.

A difference is said as it is, kind by kind; no side is taken to be right. An operation
whose outcome the merchant does not know yet ("sent": no verified answer) may be one the
gateway filed: such operations are counted apart, so that a difference they may explain
is not read as a loss.

The kinds' figures are not all the gateway signs: the batch's net, what it settles to the
merchant, is a figure of its own, and every total names its currency and exponent. So the
net is reconciled too (the merchant's own: captures less their reversals, less refunds
net of theirs), and so is the unit: a batch whose totals are in another currency or
exponent than the merchant's operations filed in it does not agree, whatever its numbers
(1999 yen is not 19.99 euro). A batch the merchant filed nothing in has no unit of the
merchant's to be held to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from clients.merchant.records import Operation, OperationKind, OperationState
from setpay.v1 import common_pb2, gateway_admin_pb2

# The kinds a batch files, in the order BatchStatus lists them (an authorization
# reversal settles nothing and is filed in no batch).
FILED_KINDS = (
    OperationKind.CAPTURE,
    OperationKind.CREDIT,
    OperationKind.CAPTURE_REVERSAL,
    OperationKind.CREDIT_REVERSAL,
)


@dataclass(frozen=True)
class Figures:
    """How many transactions of one kind, and their sum in minor units."""

    count: int
    amount: int


@dataclass(frozen=True)
class Difference:
    """One kind on which the gateway's batch and the merchant's books disagree."""

    kind: OperationKind
    gateway: Figures
    merchant: Figures


@dataclass(frozen=True, order=True)
class Unit:
    """What an amount counts: an ISO 4217 currency, and the exponent of its minor unit."""

    currency: int
    exp10: int

    def __str__(self) -> str:
        return f"currency {self.currency} exponent {self.exp10}"


@dataclass(frozen=True)
class Reconciliation:
    """A batch reconciled: each disagreement, and what the merchant cannot count yet."""

    batch_id: str
    differences: tuple[Difference, ...]
    #: Operations without a verified answer: the gateway may have filed them anywhere.
    unknown_outcomes: int
    #: The batch's net as the gateway signed it, and as the merchant's operations make it.
    gateway_net: int = 0
    merchant_net: int = 0
    #: The units of the gateway's totals and of the merchant's operations in the batch,
    #: when they are not the same (empty otherwise).
    gateway_units: tuple[Unit, ...] = ()
    merchant_units: tuple[Unit, ...] = ()

    @property
    def agrees(self) -> bool:
        """True when every kind's count and sum, the net, and the unit are the same on
        both sides."""
        return (
            not self.differences
            and self.gateway_net == self.merchant_net
            and self.gateway_units == self.merchant_units
        )


def gateway_figures(status: gateway_admin_pb2.BatchStatus) -> dict[OperationKind, Figures]:
    """The BatchStatus's count and total of each kind it files."""

    def figures(count: int, total: common_pb2.CurrencyAmount) -> Figures:
        return Figures(count, total.amount)

    return {
        OperationKind.CAPTURE: figures(status.capture_count, status.captured_total),
        OperationKind.CREDIT: figures(status.credit_count, status.credited_total),
        OperationKind.CAPTURE_REVERSAL: figures(
            status.capture_reversal_count, status.capture_reversed_total
        ),
        OperationKind.CREDIT_REVERSAL: figures(
            status.credit_reversal_count, status.credit_reversed_total
        ),
    }


def merchant_figures(
    operations: Iterable[Operation], batch_id: str
) -> dict[OperationKind, Figures]:
    """The count and sum of each kind the merchant was answered as filed in ``batch_id``."""
    counts = dict.fromkeys(FILED_KINDS, 0)
    amounts = dict.fromkeys(FILED_KINDS, 0)
    for op in operations:
        if op.state is OperationState.SUCCEEDED and op.batch_id == batch_id and op.kind in counts:
            counts[op.kind] += 1
            amounts[op.kind] += op.result_amount
    return {kind: Figures(counts[kind], amounts[kind]) for kind in FILED_KINDS}


def net_of(figures: dict[OperationKind, Figures]) -> int:
    """What a batch of these figures settles to the merchant: captures less their
    reversals, less refunds net of their reversals (negative when it takes back)."""
    return (
        figures[OperationKind.CAPTURE].amount
        - figures[OperationKind.CAPTURE_REVERSAL].amount
        - (figures[OperationKind.CREDIT].amount - figures[OperationKind.CREDIT_REVERSAL].amount)
    )


def gateway_units(status: gateway_admin_pb2.BatchStatus) -> tuple[Unit, ...]:
    """The units the BatchStatus's totals, its net among them, are given in."""
    totals = (
        status.captured_total,
        status.credited_total,
        status.capture_reversed_total,
        status.credit_reversed_total,
        status.net_total,
    )
    return tuple(sorted({Unit(t.currency, t.exp10) for t in totals}))


def merchant_units(operations: Iterable[Operation], batch_id: str) -> tuple[Unit, ...]:
    """The units of the merchant's operations answered as filed in ``batch_id``."""
    return tuple(
        sorted(
            {
                Unit(op.amount.currency, op.amount.exp10)
                for op in operations
                if op.state is OperationState.SUCCEEDED
                and op.batch_id == batch_id
                and op.kind in FILED_KINDS
            }
        )
    )


def reconcile(
    batch_id: str, status: gateway_admin_pb2.BatchStatus, operations: Iterable[Operation]
) -> Reconciliation:
    """Compare the gateway's BatchStatus of ``batch_id`` with the merchant's operations."""
    operations = list(operations)
    theirs, ours = gateway_figures(status), merchant_figures(operations, batch_id)
    differences = tuple(
        Difference(kind, theirs[kind], ours[kind])
        for kind in FILED_KINDS
        if theirs[kind] != ours[kind]
    )
    unknown = sum(
        1
        for op in operations
        if op.state is OperationState.SENT and op.kind is not OperationKind.AUTH_REVERSAL
    )
    signed_in, ours_in = gateway_units(status), merchant_units(operations, batch_id)
    if not ours_in or signed_in == ours_in:  # nothing of the merchant's to hold it to
        signed_in = ours_in = ()
    return Reconciliation(
        batch_id,
        differences,
        unknown,
        gateway_net=status.net_total.amount,
        merchant_net=net_of(ours),
        gateway_units=signed_in,
        merchant_units=ours_in,
    )


def reconciliation_lines(result: Reconciliation) -> list[str]:
    """The reconciliation for people: one line when it agrees, else one per difference."""
    if result.agrees:
        return [f"batch {result.batch_id}: agrees with the merchant's operations"]
    lines = [f"batch {result.batch_id}: differs from the merchant's operations"]
    for d in result.differences:
        lines.append(
            f"  {d.kind.value}: gateway {d.gateway.amount} in {d.gateway.count}, "
            f"merchant {d.merchant.amount} in {d.merchant.count}"
        )
    if result.gateway_net != result.merchant_net:
        lines.append(f"  net: gateway {result.gateway_net}, merchant {result.merchant_net}")
    if result.gateway_units != result.merchant_units:
        lines.append(
            f"  unit: gateway {', '.join(map(str, result.gateway_units))}; "
            f"merchant {', '.join(map(str, result.merchant_units))}"
        )
    if result.unknown_outcomes:
        lines.append(
            f"  {result.unknown_outcomes} operation(s) of unknown outcome may explain it "
            "(serve sends them again)"
        )
    return lines
