"""A posting that would take an account's running sum past int64 is refused whole, on
every store: an error and nothing written, never a wrapped or rounded sum (``limits``,
MAX_AMOUNT, says why the sums can grow that far)."""

from __future__ import annotations

import pytest

from gateway.ledger import Authorized, CaptureItem, Ledger, Posted, PostingOutcome, StoreError
from gateway.ledger.limits import MAX_INT64
from tests.gateway.ledger.ledger_support import EUR, MERCHANT, PAN_A, Backend, Bank

# How far below int64's largest value the test puts the card's sums: less than the
# capture it then asks, so that capture's sum is the first to pass it.
HEADROOM = 50
CAPTURED = 100


def _sums(backend: Backend, account_id: str) -> list[tuple[object, ...]]:
    return backend.raw_query(
        "SELECT debits_pending, debits_posted, credits_pending, credits_posted"
        f" FROM accounts WHERE id = '{account_id}'"
    )


def _shift(backend: Backend, account_id: str, by: int) -> None:
    """Move both of the card's posted sums by ``by``: the books stay balanced."""
    backend.raw_execute(
        f"UPDATE accounts SET debits_posted = debits_posted + ({by}),"
        f" credits_posted = credits_posted + ({by}) WHERE id = '{account_id}'"
    )


def test_a_sum_past_int64_is_refused_and_writes_nothing(
    bank: Bank, backend: Backend, ledger: Ledger
) -> None:
    approved = bank.authorize(PAN_A, CAPTURED)
    assert isinstance(approved, Authorized)
    card = approved.card_account_id
    # A card whose sums have grown for years (a credit and its reversal, over and over).
    near = MAX_INT64 - HEADROOM
    _shift(backend, card, near)
    before = _sums(backend, card)
    rrpid = bank.fresh("capture")
    item = CaptureItem(approved.hold_id, CAPTURED, EUR)

    with pytest.raises(StoreError):
        bank.call(ledger.capture, merchant_id=MERCHANT, items=[item], rrpid=rrpid)

    assert _sums(backend, card) == before
    hold = ledger.hold(approved.hold_id)
    assert (hold.captured, hold.pending) == (0, CAPTURED)
    # Nothing was kept under the RRPID either: the same request posts once the sums fit.
    _shift(backend, card, -near)
    outcome = bank.call(ledger.capture, merchant_id=MERCHANT, items=[item], rrpid=rrpid)
    assert isinstance(outcome, PostingOutcome)
    (posted,) = outcome.items
    assert isinstance(posted, Posted) and posted.amount == CAPTURED
