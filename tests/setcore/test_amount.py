"""CurrencyAmount checks: each refusal for its own reason, and exponents never rescaled."""

from __future__ import annotations

import pytest

from setcore.amount import MAX_EXP10, MIN_EXP10, check_amount, same_unit
from setcore.errors import ErrorCode

from .certified import eur, refused


@pytest.mark.parametrize("exp10", [MIN_EXP10, 2, MAX_EXP10])
def test_an_iso_4217_exponent_is_accepted(exp10: int) -> None:
    check_amount(eur(1999, exp10=exp10))


@pytest.mark.parametrize("exp10", [-7, MIN_EXP10 - 1, MAX_EXP10 + 1, 2**31 - 1])
def test_an_exponent_no_currency_has_is_refused(exp10: int) -> None:
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_amount, eur(1999, exp10=exp10))
    assert "exponent" in reason


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        (eur(0), "positive"),
        (eur(-1), "positive"),
        (eur(1, 0), "currency"),
        (eur(1, 1000), "currency"),
    ],
)
def test_amount_and_currency_are_checked(amount: object, says: str) -> None:
    assert says in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_amount, amount)


def test_zero_only_where_allowed() -> None:
    check_amount(eur(0), allow_zero=True)
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_amount, eur(-1), allow_zero=True)


def test_same_unit_needs_currency_and_exponent() -> None:
    assert same_unit(eur(1999), eur(5))
    assert not same_unit(eur(1999), eur(1999, 840))
    # 1999 at exponent 2 and 19990 at exponent 3 are the same sum, but never rescaled.
    assert not same_unit(eur(1999), eur(19990, exp10=3))
    assert not same_unit(eur(1999), eur(1999, exp10=0))
