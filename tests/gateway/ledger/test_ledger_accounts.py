"""Card and merchant accounts: open, find, block, unblock, close, limits (both stores)."""

from __future__ import annotations

import pytest

from gateway.ledger import (
    AccountExists,
    AccountStateError,
    AccountStatus,
    InvalidRequest,
    Ledger,
    PanUnreadable,
    UnknownAccount,
    UnknownMerchant,
)
from gateway.ledger.pan import pan_index
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, PAN_A, PAN_B, PAN_C, USD, Backend, Bank


def test_open_card_account_shows_only_the_masked_pan(ledger: Ledger) -> None:
    card = ledger.open_card_account(PAN_A, EXPIRY, 50_000, EUR)
    assert card.masked_pan == "411111******1111"
    assert (card.status, card.credit_limit, card.currency) == (AccountStatus.ACTIVE, 50_000, EUR)
    assert (card.posted_debt, card.pending, card.available) == (0, 0, 50_000)
    assert card.account_id
    assert PAN_A not in repr(card) and PAN_A not in str(card)


def test_find_card_account_by_pan_and_by_id(ledger: Ledger) -> None:
    a = ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR)
    b = ledger.open_card_account(PAN_B, "202901", 2000, USD)
    assert ledger.find_card_account(PAN_A) == a
    assert ledger.find_card_account(PAN_B) == b
    assert ledger.card_account(b.account_id) == b


def test_the_cas_key_for_a_card_is_stable_keyed_and_not_the_ledgers_index(
    ledger: Ledger,
) -> None:
    """What the CA counts a card's refusals under: the same for one card, not its number,
    and no value the ledger's own rows hold (the two stores cannot be joined)."""
    key = ledger.card_refusals_key(PAN_A)
    assert key == ledger.card_refusals_key(PAN_A) != ledger.card_refusals_key(PAN_B)
    assert PAN_A.encode() not in key and PAN_A not in key.hex()
    assert key != pan_index(ledger._keys, PAN_A)
    with pytest.raises(InvalidRequest):
        ledger.card_refusals_key("not a card number")


def test_reveal_pan_decrypts_the_stored_pan(ledger: Ledger) -> None:
    card = ledger.open_card_account(PAN_C, EXPIRY, 1000, EUR)
    assert ledger.reveal_pan(card.account_id) == PAN_C


def test_sealed_pan_moved_to_another_account_does_not_open(
    ledger: Ledger, backend: Backend
) -> None:
    a = ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR)
    b = ledger.open_card_account(PAN_B, EXPIRY, 1000, EUR)
    # Copy A's sealed PAN onto B's row: the associated data (account id) no longer matches.
    backend.raw_execute(
        "UPDATE card_accounts SET pan_sealed = (SELECT pan_sealed FROM card_accounts"
        f" WHERE account_id = '{a.account_id}') WHERE account_id = '{b.account_id}'"
    )
    with pytest.raises(PanUnreadable):
        ledger.reveal_pan(b.account_id)


def test_unknown_card_account(ledger: Ledger) -> None:
    with pytest.raises(UnknownAccount):
        ledger.card_account("card-nope")
    with pytest.raises(UnknownAccount) as excinfo:
        ledger.find_card_account(PAN_A)
    assert PAN_A not in str(excinfo.value)
    with pytest.raises(UnknownAccount):
        ledger.block_card_account("card-nope")
    with pytest.raises(UnknownAccount):
        ledger.set_credit_limit("card-nope", 10)


def test_one_account_per_pan(ledger: Ledger) -> None:
    ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR)
    with pytest.raises(AccountExists) as excinfo:
        ledger.open_card_account(PAN_A, "202901", 9000, EUR)
    assert PAN_A not in str(excinfo.value)


@pytest.mark.parametrize(
    ("pan", "expiry", "limit", "currency", "match"),
    [
        ("4111", EXPIRY, 1000, EUR, "^pan "),
        (PAN_A, "2030-12", 1000, EUR, "^expiry must be a card expiry"),
        (PAN_A, "203013", 1000, EUR, "^expiry must have a month"),
        (PAN_A, EXPIRY, -1, EUR, "^credit_limit "),
        (PAN_A, EXPIRY, 10**13, EUR, "^credit_limit "),
        (PAN_A, EXPIRY, 1000, 0, "^currency "),
        (PAN_A, EXPIRY, 1000, 1000, "^currency "),
        (PAN_A, EXPIRY, 1000, 959, "^currency 959 \\(XAU\\) has no ISO 4217 minor unit"),  # gold
    ],
)
def test_open_card_account_refuses_bad_arguments(
    ledger: Ledger, pan: str, expiry: str, limit: int, currency: int, match: str
) -> None:
    with pytest.raises(InvalidRequest, match=match):
        ledger.open_card_account(pan, expiry, limit, currency)


def test_block_unblock_close(ledger: Ledger) -> None:
    card = ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR)
    assert ledger.block_card_account(card.account_id).status is AccountStatus.BLOCKED
    assert ledger.block_card_account(card.account_id).status is AccountStatus.BLOCKED
    assert ledger.unblock_card_account(card.account_id).status is AccountStatus.ACTIVE
    assert ledger.close_card_account(card.account_id).status is AccountStatus.CLOSED
    assert ledger.card_account(card.account_id).status is AccountStatus.CLOSED


def test_closed_account_stays_closed(ledger: Ledger) -> None:
    card = ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR)
    ledger.close_card_account(card.account_id)
    with pytest.raises(AccountStateError):
        ledger.unblock_card_account(card.account_id)
    with pytest.raises(AccountStateError):
        ledger.block_card_account(card.account_id)
    with pytest.raises(AccountStateError):
        ledger.set_credit_limit(card.account_id, 5000)
    assert ledger.card_account(card.account_id).status is AccountStatus.CLOSED


def test_set_credit_limit_changes_available_credit(bank: Bank) -> None:
    card = bank.ledger.find_card_account(PAN_A)
    bank.authorize(PAN_A, 4000)
    raised = bank.ledger.set_credit_limit(card.account_id, 20_000)
    assert (raised.credit_limit, raised.pending, raised.available) == (20_000, 4000, 16_000)
    # Lowering below what is held is allowed; it only stops new debits.
    lowered = bank.ledger.set_credit_limit(card.account_id, 1000)
    assert lowered.available == -3000


def test_merchant_accounts(ledger: Ledger) -> None:
    m = ledger.open_merchant_account("shop-1", EUR)
    assert (m.merchant_id, m.currency, m.balance, m.pending) == ("shop-1", EUR, 0, 0)
    assert ledger.merchant_account("shop-1") == m
    with pytest.raises(AccountExists):
        ledger.open_merchant_account("shop-1", USD)
    with pytest.raises(UnknownMerchant):
        ledger.merchant_account("shop-2")
    with pytest.raises(InvalidRequest, match=r"^merchant_id "):
        ledger.open_merchant_account("", EUR)
