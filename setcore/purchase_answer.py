"""What the wallet accepts in a merchant's PRes or InqRes beyond its signature and echoes:
the transaction it offered, and amounts within the one the cardholder agreed.

SET-PROTOCOL.md 5.6 and 5.7: PResData carries the TransIDs of the purchase and, per
payload, what became of it (authorized, captured, credited amounts). The merchant signs
these, but a signature only says who wrote them: a PRes naming another LID-C or LID-M
answers some other purchase, and an amount the cardholder never agreed to would be
recorded by the wallet as what the merchant took. ``ProtocolError`` codes: UNKNOWN_XID
and UNKNOWN_LID for another transaction's ids, WRAPPER_MSG_MISMATCH for TransIDs that
differ from the offer otherwise (as the merchant's own check of OIData says), and
DECODING_FAILURE for an amount in another currency or exponent, or above the agreed one
(as the merchant says of an AuthRes giving such an amount).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from setcore.amount import same_unit
from setcore.errors import ErrorCode, fail
from setpay.v1 import common_pb2, purchase_pb2

# The amounts a PResPayload reports; each, when present, is in the purchase's unit.
_REPORTED = ("auth_amt", "captured_amt", "credited_amt")


def check_answer_ids(got: common_pb2.TransIDs, offered: common_pb2.TransIDs, what: str) -> None:
    """The answer's TransIDs are those of the offer the purchase was made on, every field."""
    if not hmac.compare_digest(got.xid, offered.xid):
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, f"{what} is for another transaction")
    if got.lid_c != offered.lid_c:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, f"{what} is for another LID-C")
    if got.lid_m != offered.lid_m:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, f"{what} is for another LID-M")
    if got.SerializeToString(deterministic=True) != offered.SerializeToString(deterministic=True):
        raise fail(
            ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, f"{what} TransIDs differ from the offer's"
        )


def check_reported_amounts(
    payloads: Iterable[purchase_pb2.PResPayload], agreed: common_pb2.CurrencyAmount, what: str
) -> None:
    """Every amount the answer reports is in the agreed currency and exponent and at most
    the agreed amount.

    Not "equal to": the gateway may authorize less than the purchase amount (never more,
    SET-PROTOCOL.md 9.3 item 11), a reversal lowers what stays authorized, and captures
    and refunds are parts of it; what no honest answer holds is more, or another unit.
    """
    for payload in payloads:
        for name in _REPORTED:
            if not payload.HasField(name):
                continue
            amount: common_pb2.CurrencyAmount = getattr(payload, name)
            if not same_unit(amount, agreed) or not 0 <= amount.amount <= agreed.amount:
                raise fail(
                    ErrorCode.ERROR_CODE_DECODING_FAILURE,
                    f"{what} reports {name} {amount.amount} (currency {amount.currency}, "
                    f"exponent {amount.exp10}) for a purchase of {agreed.amount} (currency "
                    f"{agreed.currency}, exponent {agreed.exp10})",
                )
