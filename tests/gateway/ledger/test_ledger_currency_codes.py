"""The ledger and ISO 4217's list: no account is opened in a code the list does not hold
now, and an account opened before its currency was withdrawn still reads (both stores)."""

from __future__ import annotations

import pytest

from gateway.ledger import InvalidRequest, Ledger
from setcore.currency import exponent_for
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, PAN_A, PAN_B, Backend

ZWL = 932  # withdrawn in 2024 for ZWG, 924


@pytest.mark.parametrize("currency", [1, 2, ZWL])
def test_no_account_is_opened_in_a_code_iso_4217_does_not_list_now(
    ledger: Ledger, currency: int
) -> None:
    """The old code opened both accounts, counting code 1 as two-digit money."""
    with pytest.raises(InvalidRequest, match=r"^currency "):
        ledger.open_card_account(PAN_A, EXPIRY, 1000, currency)
    with pytest.raises(InvalidRequest, match=r"^currency "):
        ledger.open_merchant_account("m-nowhere", currency)


def test_an_account_opened_before_its_currency_was_withdrawn_still_reads(
    ledger: Ledger, backend: Backend
) -> None:
    card = ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR)
    # As if opened in ZWL while ZWL was current: the stores read a currency back as a
    # number, so the account is found and counted, in the unit it had.
    backend.raw_execute(f"UPDATE accounts SET currency = {ZWL} WHERE id = '{card.account_id}'")
    assert ledger.card_account(card.account_id).currency == ZWL
    assert ledger.find_card_account(PAN_A).credit_limit == 1000
    assert ZWL in {t.currency for t in ledger.totals()}
    assert exponent_for(ZWL) == 2
    with pytest.raises(InvalidRequest, match=r"^currency "):
        ledger.open_card_account(PAN_B, EXPIRY, 1000, ZWL)
