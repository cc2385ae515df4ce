"""Amounts: what every CurrencyAmount must be, and when two of them count the same unit.

A CurrencyAmount is an integer count of minor units of an ISO 4217 currency with the
decimal exponent of that minor unit (SET-PROTOCOL.md 11.1, rule 7). Two amounts are
compared only when they name the same currency and the same exponent: 1999 at exponent 2
is not 1999 at exponent 0, and setcore never rescales one into the other, since the
cardholder signed the exponent too (it is inside HOD). An amount whose exponent differs
from the one it is compared with disagrees with it, like a larger one.

Errors: ``ProtocolError`` DECODING_FAILURE for an amount no currency could have.
"""

from __future__ import annotations

from setcore.errors import ErrorCode, fail
from setpay.v1 import common_pb2

# ISO 4217 numeric currency codes are three digits; 000 is not assigned.
MIN_CURRENCY = 1
MAX_CURRENCY = 999
# ISO 4217 gives every currency 0 to 4 minor-unit digits (JPY 0, EUR 2, BHD 3, CLF 4).
# The protocol text names no range and calls the exponent informational, so the safe
# reading is ISO's: an exponent outside it belongs to no currency, and one far outside
# it (negative, or dozens of digits) would let an amount mean a wildly different sum.
MIN_EXP10 = 0
MAX_EXP10 = 4


def check_amount(amount: common_pb2.CurrencyAmount, *, allow_zero: bool = False) -> None:
    """Refuse a non-positive amount (zero if allowed), a non-ISO 4217 currency or exponent."""
    if amount.amount < 0 or (amount.amount == 0 and not allow_zero):
        least = "non-negative" if allow_zero else "positive"
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, f"amount must be {least}")
    if not MIN_CURRENCY <= amount.currency <= MAX_CURRENCY:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "currency must be an ISO 4217 number")
    if not MIN_EXP10 <= amount.exp10 <= MAX_EXP10:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"amount exponent must be {MIN_EXP10}..{MAX_EXP10} (ISO 4217 minor units)",
        )


def same_unit(a: common_pb2.CurrencyAmount, b: common_pb2.CurrencyAmount) -> bool:
    """Whether two amounts count the same minor unit: same currency, same exponent."""
    return a.currency == b.currency and a.exp10 == b.exp10
