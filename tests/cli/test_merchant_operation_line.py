"""How ``setpay merchant`` shows a refused settlement operation: with the gateway's code,
named from the enum of the operation's kind. It used to print "refused, 0" for every
refusal, so a credit reversal the card had no room for (INSUFFICIENT_FUNDS) read as one
refused for no stated reason (UNSPECIFIED_FAILURE), which ask different next steps."""

from __future__ import annotations

import pytest

from cli.merchant import operation_line
from clients.merchant.records import Money, Operation, OperationKind, OperationState
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c


def _operation(kind: OperationKind, state: OperationState, code: int) -> Operation:
    return Operation(
        rrpid=b"\x11" * 16, xid=b"\x22" * 32, kind=kind, amount=Money(978, 5000), state=state,
        request=b"", request_digest=b"", original_rrpid=b"\x33" * 16, result_code=code,
        result_amount=0, batch_id="", created_ms=0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "code", "named"),
    [
        (OperationKind.CREDIT_REVERSAL, c.CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS,
         "CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS"),
        (OperationKind.CREDIT_REVERSAL, c.CAP_REV_OR_CRED_CODE_UNSPECIFIED_FAILURE,
         "CAP_REV_OR_CRED_CODE_UNSPECIFIED_FAILURE"),
        (OperationKind.CREDIT, c.CAP_REV_OR_CRED_CODE_BATCH_CLOSED,
         "CAP_REV_OR_CRED_CODE_BATCH_CLOSED"),
        (OperationKind.CAPTURE_REVERSAL, c.CAP_REV_OR_CRED_CODE_CAP_PURGED,
         "CAP_REV_OR_CRED_CODE_CAP_PURGED"),
        # The same numbers mean other things in the other kinds' enums.
        (OperationKind.CAPTURE, a.CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION,
         "CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION"),
        (OperationKind.AUTH_REVERSAL, a.AUTH_REV_CODE_INVALID_AMOUNT,
         "AUTH_REV_CODE_INVALID_AMOUNT"),
    ],
)  # fmt: skip
def test_a_refused_operation_shows_its_code_by_name(
    kind: OperationKind, code: int, named: str
) -> None:
    line = operation_line(_operation(kind, OperationState.REFUSED, code))
    assert line.startswith(f"{kind.value} 11111111 for order 22222222: refused ({named}), 0")


def test_a_code_this_merchant_does_not_know_is_shown_by_number() -> None:
    # Saved by a newer merchant on the same database: shown, never a crash of the listing.
    line = operation_line(_operation(OperationKind.CREDIT, OperationState.REFUSED, 99))
    assert "refused (CapRevOrCredCode 99), 0" in line


def test_a_succeeded_operation_shows_no_code() -> None:
    succeeded = _operation(OperationKind.CAPTURE, OperationState.SUCCEEDED, a.CAP_CODE_SUCCESS)
    assert ": succeeded, 0" in operation_line(succeeded)
