"""Amounts: what every CurrencyAmount must be, and when two of them count the same unit.

A CurrencyAmount is an integer count of minor units of an ISO 4217 currency with the
decimal exponent of that minor unit (SET-PROTOCOL.md 11.1, rule 7). ``check_amount``
holds every amount to its currency's own minor unit (``setcore.currency``), the unit
the ledger counts in. Two amounts are compared only when they name the same currency
and the same exponent, and setcore never rescales one into the other, since the
cardholder signed the exponent too (it is inside HOD); after ``check_amount`` the
exponents of one currency always agree, and ``same_unit`` checks them again regardless.

Errors: ``ProtocolError`` DECODING_FAILURE for an amount no currency could have.
"""

from __future__ import annotations

from setcore.currency import minor_unit, why_refused
from setcore.errors import ErrorCode, fail
from setpay.v1 import common_pb2


def check_amount(amount: common_pb2.CurrencyAmount, *, allow_zero: bool = False) -> None:
    """Refuse a non-positive amount (zero if allowed), a code that is no current ISO 4217
    currency with a minor unit, or an exponent other than that minor unit.

    The protocol text calls the exponent informational and names no rule for it; the
    safe reading is ISO's. The ledger counts minor units, so an amount in another unit
    would be booked as a different sum than the one signed (``setcore.currency``).
    """
    if amount.amount < 0 or (amount.amount == 0 and not allow_zero):
        least = "non-negative" if allow_zero else "positive"
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, f"amount must be {least}")
    # Current codes only, even for the capture of a hold placed before ISO withdrew its
    # currency: the list drops a code after its currency has left circulation, and a hold
    # that is never captured is released at its expiry, so no sum is lost or misbooked.
    refused = why_refused(amount.currency)
    if refused is not None:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, refused)
    digits = minor_unit(amount.currency)
    if amount.exp10 != digits:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"amount exponent must be {digits} for currency {amount.currency} "
            "(its ISO 4217 minor unit)",
        )


def same_unit(a: common_pb2.CurrencyAmount, b: common_pb2.CurrencyAmount) -> bool:
    """Whether two amounts count the same minor unit: same currency, same exponent."""
    return a.currency == b.currency and a.exp10 == b.exp10
