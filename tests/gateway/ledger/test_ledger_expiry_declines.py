"""Which declines post the release of due holds: only those that counted the card's credit
(on every store).

A decision that counts a card's available credit releases the card's due holds first,
and the releases stay committed whatever it then decides, so that no later decision,
whatever its clock, sees those holds live (``expiry``). A request refused before that
point, for its own faults (an unknown original, another amount, an unknown batch, a
currency or expiry not the card's) or the account's state, changes no balance, hold or
journal entry: only its decision is kept under its RRPID (and an authorization's XID).
"""

from __future__ import annotations

import pytest

from gateway.ledger import (
    Authorized,
    CaptureItem,
    CreditItem,
    Decline,
    Declined,
    Ledger,
    Outcome,
    Posted,
    PostingOutcome,
    ReversalItem,
)
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PAN_B,
    PAN_C,
    USD,
    Backend,
    Bank,
    FakeClock,
)

# A hold's lifetime in these tests, and how far past its expiry the decisions' clocks are.
LIFETIME_MS = 60_000
LATE_MS = 1_000
# The card's credit limit; the purchase captured and refunded in full, whose refund the
# tests reverse; the hold that falls due.
CREDIT_LIMIT = 5_000
REFUNDED = 3_000
DUE = 1_000

# The tables that hold money and its bookkeeping (``requests`` and ``pi_uses`` keep the
# decision itself, which every decline stores).
MONEY_TABLES = ("accounts", "holds", "transfers", "batches")


def _snapshot(backend: Backend) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the money tables, as the database holds them."""
    return {table: backend.raw_query(f"SELECT * FROM {table} ORDER BY 1") for table in MONEY_TABLES}


def _approved(outcome: Outcome) -> Authorized:
    assert isinstance(outcome, Authorized), outcome
    return outcome


def _posted(outcome: Outcome) -> None:
    assert isinstance(outcome, PostingOutcome), outcome
    assert all(isinstance(item, Posted) for item in outcome.items), outcome


def _status_at(ledger: Ledger, clock: FakeClock, hold_id: str, now_ms: int) -> str:
    """The hold's status as a decision at ``now_ms`` sees it: ``expired`` before its
    expiry only if its release was posted."""
    later = clock.now_ms
    clock.now_ms = now_ms
    try:
        return ledger.hold(hold_id).status
    finally:
        clock.now_ms = later


class Refunded:
    """A card with a refund to reverse and a hold that has fallen due."""

    def __init__(self, ledger: Ledger, clock: FakeClock, *, debt: int = 0) -> None:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_B, EXPIRY, CREDIT_LIMIT, EUR)
        self.bank = Bank(ledger)
        self.start = clock.now_ms
        self.refunded = _approved(self.bank.authorize(PAN_B, REFUNDED)).hold_id
        self.capture(self.refunded, REFUNDED)
        _posted(
            self.bank.call(
                ledger.credit,
                merchant_id=MERCHANT,
                items=[CreditItem(self.refunded, REFUNDED, EUR)],
                rrpid=b"credit-1",
            )
        )
        if debt:
            self.capture(_approved(self.bank.authorize(PAN_B, debt)).hold_id, debt)
        expires = self.start + LIFETIME_MS
        self.due = _approved(self.bank.authorize(PAN_B, DUE, expires_at_ms=expires)).hold_id
        clock.now_ms = expires + LATE_MS

    def capture(self, hold_id: str, amount: int) -> None:
        _posted(
            self.bank.call(
                self.bank.ledger.capture,
                merchant_id=MERCHANT,
                items=[CaptureItem(hold_id, amount, EUR)],
            )
        )

    def reverse(self, *items: ReversalItem) -> tuple[Posted | Declined, ...]:
        outcome = self.bank.call(self.bank.ledger.reverse_credit, merchant_id=MERCHANT, items=items)
        assert isinstance(outcome, PostingOutcome), outcome
        return outcome.items


# What each reversal of the refund gets wrong: the original's RRPID, its batch, its amount.
BAD_REVERSALS = {
    "unknown-original": (b"credit-2", None, None, Decline.UNKNOWN_ORIGINAL),
    "another-amount": (b"credit-1", None, REFUNDED - 1, Decline.INVALID_AMOUNT),
    "unknown-batch": (b"credit-1", "batch-none", None, Decline.BATCH_UNKNOWN),
}


@pytest.mark.parametrize("bad", BAD_REVERSALS)
def test_a_credit_reversal_refused_for_its_own_faults_changes_nothing(
    ledger: Ledger, backend: Backend, clock: FakeClock, bad: str
) -> None:
    card = Refunded(ledger, clock)
    original, batch_id, amount, reason = BAD_REVERSALS[bad]
    item = ReversalItem(card.refunded, original, batch_id, amount)
    before = _snapshot(backend)
    assert card.reverse(item) == (Declined(reason),)
    assert _snapshot(backend) == before
    assert _status_at(ledger, clock, card.due, card.start) == "pending"
    assert ledger.merchant_account(MERCHANT).pending == DUE


def test_a_credit_reversal_the_card_cannot_absorb_keeps_the_releases_it_counted(
    ledger: Ledger, clock: FakeClock
) -> None:
    # The card owes 2500 of 5000: with its due hold released it has 2500 free, short of
    # the 3000 to take back. That refusal counted the hold as expired; so must every
    # later decision, whatever its clock.
    card = Refunded(ledger, clock, debt=2_500)
    assert card.reverse(ReversalItem(card.refunded, b"credit-1")) == (
        Declined(Decline.INSUFFICIENT_FUNDS),
    )
    assert _status_at(ledger, clock, card.due, card.start) == "expired"
    assert ledger.merchant_account(MERCHANT).pending == 0


def test_a_credit_reversal_releases_the_due_holds_of_the_cards_it_counts_only(
    ledger: Ledger, backend: Backend, clock: FakeClock
) -> None:
    # One request, two items: one refused for its own fault on card B, one posted on
    # card C. Card C's due hold is released, card B's is not.
    card = Refunded(ledger, clock)
    clock.now_ms = card.start
    ledger.open_card_account(PAN_C, EXPIRY, CREDIT_LIMIT, EUR)
    other = _approved(card.bank.authorize(PAN_C, REFUNDED)).hold_id
    card.capture(other, REFUNDED)
    credit = [CreditItem(other, REFUNDED, EUR)]
    _posted(card.bank.call(ledger.credit, merchant_id=MERCHANT, items=credit, rrpid=b"credit-2"))
    other_due = _approved(
        card.bank.authorize(PAN_C, DUE, expires_at_ms=card.start + LIFETIME_MS)
    ).hold_id
    clock.now_ms = card.start + LIFETIME_MS + LATE_MS
    refused, posted = card.reverse(
        ReversalItem(card.refunded, b"credit-1", amount=1), ReversalItem(other, b"credit-2")
    )
    assert refused == Declined(Decline.INVALID_AMOUNT)
    assert isinstance(posted, Posted), posted
    assert _status_at(ledger, clock, card.due, card.start) == "pending"
    assert _status_at(ledger, clock, other_due, card.start) == "expired"
    assert ledger.merchant_account(MERCHANT).pending == DUE


@pytest.fixture
def due(ledger: Ledger, clock: FakeClock) -> tuple[Bank, dict[str, str]]:
    """MERCHANT; cards PAN_B (limit 1000: a due hold of 600 and a live one of 300) and
    PAN_C (a due hold of 600, then blocked); the clock past the due holds' expiry.
    Returns the bank and each card's due hold id."""
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_B, EXPIRY, 1_000, EUR)
    blocked = ledger.open_card_account(PAN_C, EXPIRY, 1_000, EUR)
    bank = Bank(ledger)
    start = clock.now_ms
    held = {
        pan: _approved(bank.authorize(pan, 600, expires_at_ms=start + LIFETIME_MS)).hold_id
        for pan in (PAN_B, PAN_C)
    }
    _approved(bank.authorize(PAN_B, 300, expires_at_ms=start + 2 * LIFETIME_MS))
    ledger.block_card_account(blocked.account_id)
    clock.now_ms = start + LIFETIME_MS + LATE_MS
    return bank, held


# What each authorization gets wrong: its PAN, currency and PAN data expiry.
BAD_AUTHORIZATIONS = {
    "currency": (PAN_B, USD, EXPIRY, Decline.CURRENCY_MISMATCH),
    "pan-expiry": (PAN_B, EUR, "203011", Decline.EXPIRED_CARD),
    "unknown-card": (PAN_A, EUR, EXPIRY, Decline.UNKNOWN_ACCOUNT),
    "blocked-card": (PAN_C, EUR, EXPIRY, Decline.BLOCKED_ACCOUNT),
}


@pytest.mark.parametrize("bad", BAD_AUTHORIZATIONS)
def test_an_authorization_refused_before_counting_credit_changes_nothing(
    ledger: Ledger,
    backend: Backend,
    clock: FakeClock,
    due: tuple[Bank, dict[str, str]],
    bad: str,
) -> None:
    # Refused for its own faults or for the account's state: the card's credit was never
    # counted, so its due holds are left to the next decision that counts it, or the sweep.
    bank, held = due
    pan, currency, pan_expiry, reason = BAD_AUTHORIZATIONS[bad]
    before = _snapshot(backend)
    assert bank.authorize(pan, 100, currency=currency, pan_expiry=pan_expiry) == Declined(reason)
    assert _snapshot(backend) == before
    earlier = clock.now_ms - LIFETIME_MS
    assert {_status_at(ledger, clock, hold_id, earlier) for hold_id in held.values()} == {"pending"}


def test_an_authorization_refused_for_want_of_credit_keeps_the_releases_it_counted(
    ledger: Ledger, clock: FakeClock, due: tuple[Bank, dict[str, str]]
) -> None:
    bank, held = due
    # 700 free once the due hold is released, short of 800: the refusal counted it expired.
    assert bank.authorize(PAN_B, 800) == Declined(Decline.INSUFFICIENT_FUNDS)
    assert _status_at(ledger, clock, held[PAN_B], clock.now_ms - LIFETIME_MS) == "expired"
    assert ledger.merchant_account(MERCHANT).pending == 300 + 600  # PAN_C's still held
