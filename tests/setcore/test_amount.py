"""CurrencyAmount checks: each refusal for its own reason, and exponents never rescaled."""

from __future__ import annotations

import pytest

from setcore.amount import check_amount, same_unit
from setcore.currency import exponent_for, minor_unit
from setcore.errors import ErrorCode

from .certified import eur, refused

JPY, BHD, CLF, USD, XAU, XXX = 392, 48, 990, 840, 959, 999


@pytest.mark.parametrize(("currency", "exp10"), [(978, 2), (USD, 2), (JPY, 0), (BHD, 3), (CLF, 4)])
def test_an_amount_at_its_currencys_minor_unit_is_accepted(currency: int, exp10: int) -> None:
    check_amount(eur(1999, currency, exp10=exp10))
    assert minor_unit(currency) == exp10 == exponent_for(currency)


@pytest.mark.parametrize(
    ("currency", "exp10"),
    [
        (978, 0),  # 1999 euro, which the ledger would book as 1999 cents
        (978, 3),
        (JPY, 2),  # 19.99 yen: the yen has no minor unit
        (BHD, 2),
        (978, -7),
        (978, 2**31 - 1),
    ],
)
def test_an_exponent_other_than_the_currencys_minor_unit_is_refused(
    currency: int, exp10: int
) -> None:
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, check_amount, eur(1999, currency, exp10=exp10)
    )
    assert f"exponent must be {minor_unit(currency)} for currency {currency}" in reason


@pytest.mark.parametrize("currency", [XAU, XXX])
def test_a_code_without_a_minor_unit_is_no_money_to_pay_in(currency: int) -> None:
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_amount, eur(1, currency))
    assert "no ISO 4217 minor unit" in reason
    assert minor_unit(currency) is None and exponent_for(currency) == 2


@pytest.mark.parametrize(
    ("currency", "says"),
    [
        (1, "currency 1 is not assigned in ISO 4217"),
        (2, "currency 2 is not assigned in ISO 4217"),
        (932, "currency 932 (ZWL) was withdrawn from ISO 4217"),
    ],
)
def test_a_code_iso_4217_does_not_list_now_is_refused_by_its_number(
    currency: int, says: str
) -> None:
    """The old code took any code from 1 to 999 as two-digit money."""
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_amount, eur(1999, currency))
    assert says in reason


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
    # 1999 at exponent 2 and 19990 at exponent 3 are the same sum, but never rescaled
    # (check_amount refuses the second; same_unit does not rely on that).
    assert not same_unit(eur(1999), eur(19990, exp10=3))
    assert not same_unit(eur(1999), eur(1999, exp10=0))
