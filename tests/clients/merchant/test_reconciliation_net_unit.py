"""Reconciling a batch holds the gateway's signed net and the unit of its totals to the
merchant's operations, as well as each kind's count and sum: a BatchStatus whose kinds
match but whose net, currency or exponent does not, does not agree."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from cli.merchant_batch import EXIT_DIFFERS, run_batch
from clients.merchant.reconciliation import reconcile, reconciliation_lines
from clients.merchant.records import Money, Operation, OperationKind, OperationState
from setpay.v1 import common_pb2, gateway_admin_pb2

EUR, USD, JPY = 978, 840, 392
BATCH = "batch-7"


@dataclass(frozen=True)
class Unit:
    """A currency and the exponent its amounts are written with."""

    currency: int
    exp10: int


EURO_CENTS = Unit(EUR, 2)


def _operation(
    n: int, kind: OperationKind, amount: int, unit: Unit = EURO_CENTS, batch: str = BATCH
) -> Operation:
    return Operation(
        rrpid=bytes([n]) * 32, xid=b"x" * 32, kind=kind,
        amount=Money(unit.currency, amount, unit.exp10), state=OperationState.SUCCEEDED,
        request=b"", request_digest=b"", original_rrpid=None, result_code=0,
        result_amount=amount, batch_id=batch, created_ms=n,
    )  # fmt: skip


# Captured 10000 and 500, one of 500 reversed; refunded 2500, and a reversal of a refund
# of 700 filed in an earlier batch: net 10000 + 500 - 500 - (2500 - 700) = 8200.
OURS = [
    _operation(1, OperationKind.CAPTURE, 10_000),
    _operation(2, OperationKind.CAPTURE, 500),
    _operation(3, OperationKind.CAPTURE_REVERSAL, 500),
    _operation(4, OperationKind.CREDIT, 2_500),
    _operation(5, OperationKind.CREDIT_REVERSAL, 700),
    _operation(6, OperationKind.CAPTURE, 999, batch="batch-other"),
]
NET = 8_200


def _status(
    net: int = NET, unit: Unit = EURO_CENTS, net_unit: Unit | None = None
) -> gateway_admin_pb2.BatchStatus:
    def total(amount: int, of: Unit = unit) -> common_pb2.CurrencyAmount:
        return common_pb2.CurrencyAmount(currency=of.currency, amount=amount, exp10=of.exp10)

    return gateway_admin_pb2.BatchStatus(
        closed=True, captured_total=total(10_500), capture_count=2,
        credited_total=total(2_500), credit_count=1,
        capture_reversed_total=total(500), capture_reversal_count=1,
        credit_reversed_total=total(700), credit_reversal_count=1,
        net_total=total(net, net_unit or unit),
    )  # fmt: skip


def test_the_batch_as_signed_agrees() -> None:
    result = reconcile(BATCH, _status(), OURS)
    assert result.agrees
    assert reconciliation_lines(result) == [f"batch {BATCH}: agrees with the merchant's operations"]


@pytest.mark.parametrize("signed", [NET + 1, -NET, 10_500 + 2_500, 10_500 - 2_500, 0], ids=str)
def test_a_net_that_is_not_the_merchants_differs(signed: int) -> None:
    result = reconcile(BATCH, _status(net=signed), OURS)
    assert not result.agrees and result.differences == ()  # every kind agrees
    assert reconciliation_lines(result) == [
        f"batch {BATCH}: differs from the merchant's operations",
        f"  net: gateway {signed}, merchant {NET}",
    ]


@pytest.mark.parametrize(
    ("unit", "net_unit", "shown"),
    [
        (Unit(USD, 2), None, "currency 840 exponent 2"),
        (Unit(EUR, 0), None, "currency 978 exponent 0"),
        (Unit(EUR, 3), None, "currency 978 exponent 3"),
        (Unit(EUR, 2), Unit(JPY, 0), "currency 392 exponent 0, currency 978 exponent 2"),
    ],
    ids=["currency", "exponent-0", "exponent-3", "net-alone"],
)
def test_totals_in_another_unit_than_the_merchants_differ(
    unit: Unit, net_unit: Unit | None, shown: str
) -> None:
    result = reconcile(BATCH, _status(unit=unit, net_unit=net_unit), OURS)
    assert not result.agrees and result.differences == ()
    assert reconciliation_lines(result)[1:] == [
        f"  unit: gateway {shown}; merchant currency 978 exponent 2"
    ]


@pytest.mark.parametrize("exp10", [0, 3], ids=["yen", "fils"])
def test_a_batch_in_a_currency_of_another_exponent_agrees_in_its_own_unit(exp10: int) -> None:
    currency = JPY if exp10 == 0 else 48
    unit = Unit(currency, exp10)
    ours = [
        _operation(1, OperationKind.CAPTURE, 10_500, unit),
        _operation(2, OperationKind.CAPTURE_REVERSAL, 500, unit),
        _operation(3, OperationKind.CREDIT, 2_500, unit),
        _operation(4, OperationKind.CREDIT_REVERSAL, 700, unit),
    ]
    status = _status(unit=unit)
    status.capture_count = 1
    assert reconcile(BATCH, status, ours).agrees


def test_a_batch_the_merchant_filed_nothing_in_has_no_unit_to_hold_it_to() -> None:
    empty = gateway_admin_pb2.BatchStatus(
        captured_total=common_pb2.CurrencyAmount(currency=USD, exp10=2),
        net_total=common_pb2.CurrencyAmount(currency=USD, exp10=2),
    )
    result = reconcile("batch-empty", empty, OURS)
    assert result.agrees


@pytest.mark.parametrize("state", [OperationState.REFUSED, OperationState.SENT], ids=str)
def test_a_refused_or_unanswered_operation_gives_the_batch_no_unit(
    state: OperationState,
) -> None:
    other = dataclasses.replace(_operation(9, OperationKind.CAPTURE, 5, Unit(USD, 2)), state=state)
    result = reconcile(BATCH, _status(), [*OURS, other])
    assert result.agrees
    assert result.unknown_outcomes == (1 if state is OperationState.SENT else 0)


class _SignedNet:
    """A merchant whose gateway signs a query's totals with a net not theirs (a unit test
    of the command's exit status: the gateway never would)."""

    class batches:  # noqa: N801 - stands in for Merchant.batches
        @staticmethod
        def administer(*_: object, **__: object) -> gateway_admin_pb2.BatchAdminResData:
            return gateway_admin_pb2.BatchAdminResData(
                batch_id=BATCH, status=gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS,
                batch_status=_status(net=-NET),
            )  # fmt: skip

    class store:  # noqa: N801 - stands in for Merchant.store
        @staticmethod
        def operations() -> list[Operation]:
            return OURS


def test_batch_query_exits_5_on_a_net_that_is_not_the_merchants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(operation="query", batch=BATCH, details=None, start=None)
    assert run_batch(_SignedNet(), args) == EXIT_DIFFERS  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert f"; net {-NET}" in out and f"  net: gateway {-NET}, merchant {NET}" in out
