"""Sums over many rows past int64, every account within it: the books' totals, their audit
and the merchant report stay exact on every store (``exact_sums``). SQLite's SUM raised
"integer overflow" there, where PostgreSQL's went on as a NUMERIC.

The amounts are the largest a currency's total can reach soonest: ``MAX_AMOUNT`` is raised
for the test to 2**62, so a few postings take a sum past 2**63 - 1 where real ones would
take millions; each account's own sums stay at 2**62 or below.
"""

from __future__ import annotations

import pytest

from gateway.ledger import Authorized, Ledger, limits
from gateway.ledger.books import differences
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    PAN_A,
    PAN_B,
    PAN_C,
    USD,
    Backend,
    Bank,
    FakeClock,
)

LARGE = 2**62
PAST_INT64 = 2 * LARGE  # 2**63: one more than the largest int64
LIFETIME_MS = 60_000


@pytest.fixture
def large_ledger(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> Bank:
    """Three cards, each with a credit limit of ``LARGE``; merchants m1, m2, m3 (EUR)."""
    monkeypatch.setattr(limits, "MAX_AMOUNT", LARGE)
    for merchant in ("m1", "m2", "m3"):
        ledger.open_merchant_account(merchant, EUR)
    for pan in (PAN_A, PAN_B, PAN_C):
        ledger.open_card_account(pan, EXPIRY, LARGE, EUR)
    return Bank(ledger)


def _authorized(outcome: object) -> Authorized:
    assert isinstance(outcome, Authorized)
    return outcome


def test_currency_totals_past_int64_are_exact_and_balance(large_ledger: Bank) -> None:
    # Two cards, each captured for all its credit at a merchant of its own: every card's and every
    # merchant's posted sum is LARGE, the currency's are twice that.
    for pan, merchant in ((PAN_B, "m2"), (PAN_C, "m3")):
        _authorized(large_ledger.authorize(pan, LARGE, merchant=merchant, capture_now=True))

    large_ledger.ledger.open_merchant_account("m4", USD)  # a currency with nothing in it

    usd, eur = large_ledger.ledger.totals()  # in currency order, as the SQL sorts them
    assert (eur.currency, eur.debits_pending, eur.credits_pending) == (EUR, 0, 0)
    assert eur.debits_posted == eur.credits_posted == PAST_INT64
    assert (usd.currency, usd.debits_pending, usd.debits_posted) == (USD, 0, 0)
    assert (usd.credits_pending, usd.credits_posted) == (0, 0)
    large_ledger.ledger.check_balanced()


def test_journal_and_holds_past_int64_are_exact_and_balance(
    large_ledger: Bank, clock: FakeClock, backend: Backend
) -> None:
    # One card's whole credit held at one merchant and released at expiry, twice: the
    # journal's pending (and void) sums between the two, and the sum of the merchant's
    # holds, pass int64; the card's own balances are back at zero.
    ledger = large_ledger.ledger
    for _ in range(2):
        expires = clock.now_ms + LIFETIME_MS
        _authorized(large_ledger.authorize(PAN_A, LARGE, merchant="m1", expires_at_ms=expires))
        clock.now_ms = expires + 1
        assert ledger.expire_holds() == 1

    holds = ledger.merchant_holds("m1")
    assert (holds.count, holds.amount) == (2, PAST_INT64)
    ledger.check_balanced()
    audit = backend.open_store()  # the audit as ``setpay bank check-books`` reads it
    try:
        assert audit.read(differences) == ()
    finally:
        audit.close()
