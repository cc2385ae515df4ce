"""The ISO 4217 table: current codes keep their minor units, withdrawn codes are read but
take nothing new, and every other code is refused by its number."""

from __future__ import annotations

import pytest

from setcore.currency import exponent_for, minor_unit, minor_unit_on_record, why_refused

# The units the module named before it listed every code (it gave any other code from 1
# to 999 two digits); each must be kept.
NAMED_BEFORE = {
    108: 0, 152: 0, 174: 0, 262: 0, 324: 0, 352: 0, 392: 0, 410: 0, 548: 0, 600: 0, 646: 0,
    704: 0, 800: 0, 940: 0, 950: 0, 952: 0, 953: 0,
    48: 3, 368: 3, 400: 3, 414: 3, 434: 3, 512: 3, 788: 3,
    927: 4, 990: 4,
}  # fmt: skip
NO_MINOR_UNIT = [955, 956, 957, 958, 959, 960, 961, 962, 963, 964, 965, 994, 999]
# Codes no currency has now: never assigned (1, 2, 3, 5, 500), or withdrawn too long ago
# to be on record (998, USS, 2014).
UNASSIGNED = [1, 2, 3, 5, 500, 998]
# Withdrawn codes and the codes that replaced them.
WITHDRAWN = {932: ("ZWL", 924), 694: ("SLL", 925), 937: ("VEF", 928), 191: ("HRK", 978)}


@pytest.mark.parametrize(("currency", "digits"), sorted(NAMED_BEFORE.items()))
def test_every_unit_named_before_is_kept(currency: int, digits: int) -> None:
    assert minor_unit(currency) == minor_unit_on_record(currency) == digits
    assert exponent_for(currency) == digits and why_refused(currency) is None


@pytest.mark.parametrize("currency", [978, 840, 826, 756])  # EUR, USD, GBP, CHF
def test_the_common_currencies_count_cents(currency: int) -> None:
    assert minor_unit(currency) == exponent_for(currency) == 2
    assert why_refused(currency) is None


@pytest.mark.parametrize("currency", UNASSIGNED)
def test_an_unassigned_code_is_refused_by_its_number(currency: int) -> None:
    assert minor_unit(currency) is None and minor_unit_on_record(currency) is None
    assert why_refused(currency) == f"currency {currency} is not assigned in ISO 4217"


@pytest.mark.parametrize("currency", NO_MINOR_UNIT)
def test_a_code_without_a_minor_unit_stays_refused(currency: int) -> None:
    assert minor_unit(currency) is None and minor_unit_on_record(currency) is None
    assert f"currency {currency} (X" in str(why_refused(currency))
    assert "has no ISO 4217 minor unit" in str(why_refused(currency))


@pytest.mark.parametrize(
    ("currency", "alpha", "successor"), [(c, *w) for c, w in WITHDRAWN.items()]
)
def test_a_withdrawn_code_takes_nothing_new_but_reads_in_its_unit(
    currency: int, alpha: str, successor: int
) -> None:
    assert minor_unit(currency) is None
    assert minor_unit_on_record(currency) == exponent_for(currency) == 2
    assert why_refused(currency) == (
        f"currency {currency} ({alpha}) was withdrawn from ISO 4217: no new business in it"
    )
    assert minor_unit(successor) == 2 and why_refused(successor) is None


@pytest.mark.parametrize("currency", [0, -978, 1000, 2**31])
def test_a_code_outside_three_digits_is_not_repeated(currency: int) -> None:
    assert why_refused(currency) == "currency must be an ISO 4217 number, 1 to 999"
    assert minor_unit(currency) is None and minor_unit_on_record(currency) is None


def test_only_listed_codes_are_taken() -> None:
    """178 current codes, 13 of them without a minor unit: the rest of 1-999 is refused."""
    taken = [c for c in range(1, 1000) if minor_unit(c) is not None]
    assert len(taken) == 178 - len(NO_MINOR_UNIT)
    assert not set(taken) & (set(UNASSIGNED) | set(WITHDRAWN) | set(NO_MINOR_UNIT))
