"""The merchant's line for a settlement answer gives the amount in its currency, as the
request's line does ("for 3000 (978)"). It once gave minor units alone ("answered
CAP_CODE_SUCCESS, 3000 in batch B"), which a reader beside "30.00 EUR" took for 3000 EUR."""

from __future__ import annotations

import logging

import pytest

from clients.merchant.records import Money, Operation, OperationKind, OperationState
from clients.merchant.settlement import Settlement


def _answered(kind: OperationKind, result: int, batch: str) -> Operation:
    return Operation(
        rrpid=bytes.fromhex("e34ca9ff") + bytes(12), xid=bytes.fromhex("17294664") + bytes(12),
        kind=kind, amount=Money(978, 3000), state=OperationState.SUCCEEDED, request=b"",
        request_digest=b"", original_rrpid=None, result_code=1, result_amount=result,
        batch_id=batch, created_ms=0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "result", "batch", "said"),
    [
        (OperationKind.CAPTURE, 3000, "B-1", "answered X, 3000 (978) in batch B-1"),
        (OperationKind.CREDIT, 1000, "B-1", "answered X, 1000 (978) in batch B-1"),
        (OperationKind.AUTH_REVERSAL, 0, "", "answered X, 0 (978)"),
    ],
)
def test_an_answer_names_its_amount_with_its_currency(
    caplog: pytest.LogCaptureFixture, kind: OperationKind, result: int, batch: str, said: str
) -> None:
    with caplog.at_level(logging.INFO, logger="setpay.merchant"):
        Settlement._log_answer(_answered(kind, result, batch), "X")
    [line] = [r.getMessage() for r in caplog.records]
    assert line == f"order 17294664: {kind.value} e34ca9ff {said}", line
