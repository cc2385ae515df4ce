"""The ledger's errors repeat the id they were given, but never a card number typed as one.

An account, merchant or hold id is not checked for being a card number: an operator who
types one where an id belongs (``setpay bank show-merchant --merchant-id`` with the
card's number) got an error repeating it whole, to the terminal, the logs, the ledger
service's answer. Such an error now shows it masked as a card is shown everywhere else
(``setcore.pan.mask_pan``: its length, at most its first six and last four digits).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from gateway.ledger import (
    AccountExists,
    AccountStateError,
    Ledger,
    LedgerError,
    UnknownAccount,
    UnknownBatch,
    UnknownHold,
    UnknownMerchant,
    pan,
)
from setcore.pan import mask_pan
from tests.cards import card
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, MERCHANT, PAN_A, Bank

# A card number typed where an id belongs, and another that names no account.
TYPED = card("411111", 7)
OTHER = card("499999", 3)
# A run of digits as long as a card number's, or longer, anywhere in a message.
CARD_LENGTH_RUN = re.compile(r"\d{13,}")
# 13 digits or more as typed in groups, with one space, hyphen or no-break space between.
GROUPED_RUN = re.compile(r"\d(?:[ \-\u00a0]?\d){12,}")

Call = Callable[[Ledger], object]


def _closed_card(ledger: Ledger) -> str:
    account = ledger.open_card_account(PAN_A, EXPIRY, 1_000, EUR).account_id
    ledger.close_card_account(account)
    return account


# Each call the ledger refuses naming the id it was given: (call, error).
REFUSED: dict[str, tuple[Call, type[LedgerError]]] = {
    "card_account": (lambda led: led.card_account(TYPED), UnknownAccount),
    "block_card_account": (lambda led: led.block_card_account(TYPED), UnknownAccount),
    "unblock_card_account": (lambda led: led.unblock_card_account(TYPED), UnknownAccount),
    "close_card_account": (lambda led: led.close_card_account(TYPED), UnknownAccount),
    "set_credit_limit": (lambda led: led.set_credit_limit(TYPED, 5), UnknownAccount),
    "reveal_pan": (lambda led: led.reveal_pan(TYPED), UnknownAccount),
    "merchant_account": (lambda led: led.merchant_account(OTHER), UnknownMerchant),
    "merchant_holds": (lambda led: led.merchant_holds(OTHER), UnknownMerchant),
    "batch_summary of no merchant": (lambda led: led.batch_summary(OTHER), UnknownMerchant),
    "batch_summary of no batch": (lambda led: led.batch_summary(TYPED, "b-x"), UnknownBatch),
    "open_merchant_account again": (
        lambda led: led.open_merchant_account(TYPED, EUR),
        AccountExists,
    ),
    "hold": (lambda led: led.hold(TYPED), UnknownHold),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_an_id_typed_as_a_card_number_is_masked_in_the_error(ledger: Ledger, name: str) -> None:
    # The ledger takes any text as a merchant ID: this one has an account.
    ledger.open_merchant_account(TYPED, EUR)
    call, error = REFUSED[name]
    with pytest.raises(error) as caught:
        call(ledger)
    message = str(caught.value)
    assert CARD_LENGTH_RUN.search(message) is None, name
    assert mask_pan(TYPED) in message or mask_pan(OTHER) in message


def test_a_closed_card_s_refusal_names_its_own_account_id(ledger: Ledger) -> None:
    """The ledger's own ids are not card numbers: repeated whole, as before."""
    account = _closed_card(ledger)
    with pytest.raises(AccountStateError, match=f"card account {account} is closed"):
        ledger.set_credit_limit(account, 5)


def test_a_merchant_id_of_a_few_digits_is_repeated_whole(bank: Bank, ledger: Ledger) -> None:
    """A merchant ID may be a number: one shorter than any card number is neither refused
    nor masked."""
    opened = ledger.open_merchant_account("123456789012", EUR)
    assert opened.merchant_id == "123456789012"
    with pytest.raises(AccountExists, match="merchant 123456789012 already has an account"):
        ledger.open_merchant_account("123456789012", EUR)
    with pytest.raises(UnknownMerchant, match="merchant 123456789013 has no account"):
        ledger.merchant_account("123456789013")
    assert ledger.merchant_account(MERCHANT).merchant_id == MERCHANT


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("m-" + "4" * 13, "m-" + "444" + "*" * 6 + "4444"),
        ("4" * 16, "444444******4444"),
        ("4" * 19, "444444" + "*" * 9 + "4444"),
        ("4" * 25, "444444" + "*" * 15 + "4444"),  # a card number with more typed beside it
        ("x" + "1" * 13 + "y" + "2" * 16, "x111******1111y222222******2222"),
        ("1" * 12, "1" * 12),
        ("12-345678901234", "12-34******1234"),  # grouped: one number of 14 digits
        ("4444 4444 4444 4444", "4444 44** **** 4444"),
        ("4444-4444\u00a04444 4444", "4444-44**\u00a0**** 4444"),
        ("12 34-56", "12 34-56"),  # grouped, shorter than a card number
        ("44  4444444444444", "44  444******4444"),  # two separators: two runs
        ("card-abcdefgh23", "card-abcdefgh23"),
        ("", ""),
    ],
    ids=[
        "13 in an id",
        "16",
        "19",
        "25",
        "two runs",
        "12",
        "hyphen",
        "spaces",
        "mixed",
        "short groups",
        "two runs apart",
        "no digit",
        "empty",
    ],
)
def test_echoed_masks_every_run_as_long_as_a_card_number(given: str, shown: str) -> None:
    assert pan.echoed(given) == shown
    assert len(pan.echoed(given)) == len(given)
    assert CARD_LENGTH_RUN.search(pan.echoed(given)) is None
    assert GROUPED_RUN.search(pan.echoed(given)) is None


def test_echoed_masks_digits_of_any_script() -> None:
    """``str.isdigit`` takes fullwidth digits, and a terminal shows them as digits."""
    fullwidth = "\uff14" * 16
    assert "\uff14" * 7 not in pan.echoed(fullwidth)
    assert len(pan.echoed(fullwidth)) == 16
