"""Card expiries of an implausible year: refused as a decoding failure by ``check_expiry``
and ``card_expiry_end``, never a ValueError, and without repeating the expiry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from setcore import pan
from setcore.errors import ErrorCode, ProtocolError
from setcore.pan import check_expiry
from setcore.pki.issuance import card_expiry_end

# Well formed (four digits, a month from 01 to 12), but of no year a card expires in: the
# years taken are 2000 to 2099 (``setcore.pan.MIN_EXPIRY_YEAR``, ``MAX_EXPIRY_YEAR``).
IMPLAUSIBLE = ("000012", "000101", "199912", "210001", "999912")  # 0000: no date at all


@pytest.mark.parametrize("expiry", IMPLAUSIBLE)
def test_an_expiry_of_an_implausible_year_is_a_decoding_failure(expiry: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        check_expiry(expiry)
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
    assert expiry not in caught.value.reason and expiry[:4] not in caught.value.reason


@pytest.mark.parametrize("expiry", IMPLAUSIBLE)
def test_card_expiry_end_refuses_an_implausible_year_as_check_expiry_does(expiry: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        card_expiry_end(expiry)
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


@pytest.mark.parametrize("expiry", ["200001", "209912"])
def test_the_first_and_last_years_are_accepted(expiry: str) -> None:
    assert check_expiry(expiry) == expiry
    end = card_expiry_end(expiry)
    assert (end.year, end.month) == (int(expiry[:4]), int(expiry[4:]))
    assert end == datetime(end.year, end.month, end.day, 23, 59, 59, tzinfo=UTC)


def test_a_year_the_calendar_cannot_name_is_a_decoding_failure_not_a_value_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were the years widened to take year 0000, ``card_expiry_end`` still refuses it."""
    monkeypatch.setattr(pan, "MIN_EXPIRY_YEAR", 0, raising=False)
    assert check_expiry("000012") == "000012"
    with pytest.raises(ProtocolError) as caught:
        card_expiry_end("000012")
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
