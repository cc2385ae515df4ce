"""Hold expiry sticks: once a decision has taken a hold as expired, no later decision,
whatever its clock, captures it or counts it (on every store).

Decisions' clocks disagree (hosts skew, a clock steps back, a capture's ``now`` is taken
before it waits for its card's lock or its write turn), so these tests set the clock of
a later decision earlier than that of the one before it.
"""

from __future__ import annotations

import pytest

from gateway.ledger import (
    AuthorizationReversed,
    Authorized,
    CaptureItem,
    CreditItem,
    Decline,
    Declined,
    Ledger,
    Posted,
    PostingOutcome,
    ReversalDeclined,
    ReversalItem,
    holds,
)
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PAN_B,
    PAN_C,
    Bank,
    FakeClock,
)

# A hold's lifetime in these tests, and how far a late decision's clock is past expiry.
LIFETIME_MS = 60_000
SKEW_MS = 2_000


def approved(outcome: object) -> Authorized:
    assert isinstance(outcome, Authorized), outcome
    return outcome


def capture(bank: Bank, hold_id: str, amount: int) -> Posted | Declined:
    outcome = bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold_id, amount, EUR)]
    )
    assert isinstance(outcome, PostingOutcome), outcome
    (item,) = outcome.items
    return item


@pytest.fixture
def small(ledger: Ledger) -> Bank:
    """MERCHANT, and card PAN_C with a limit of 1000."""
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_C, EXPIRY, 1000, EUR)
    return Bank(ledger)


def test_a_hold_whose_credit_was_given_again_cannot_be_captured_by_an_earlier_clock(
    small: Bank, clock: FakeClock
) -> None:
    start = clock.now_ms
    first = approved(small.authorize(PAN_C, 1000, expires_at_ms=start + LIFETIME_MS))
    clock.now_ms = start + LIFETIME_MS + SKEW_MS // 2
    second = approved(small.authorize(PAN_C, 1000))  # on the credit the expiry gave back
    clock.now_ms = start + LIFETIME_MS - SKEW_MS // 2  # a capture whose clock reads earlier
    assert capture(small, first.hold_id, 1000) == Declined(Decline.HOLD_EXPIRED)
    clock.now_ms = start + LIFETIME_MS + SKEW_MS
    assert isinstance(capture(small, second.hold_id, 1000), Posted)
    card = small.ledger.find_card_account(PAN_C)
    assert (card.posted_debt, card.pending, card.available) == (1000, 0, 0)
    assert small.ledger.hold(first.hold_id).status == "expired"


def test_a_credit_reversal_given_an_expired_holds_credit_keeps_it_from_capture(
    ledger: Ledger, clock: FakeClock
) -> None:
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_B, EXPIRY, 5000, EUR)
    bank = Bank(ledger)
    start = clock.now_ms
    refunded = approved(bank.authorize(PAN_B, 3000))
    assert isinstance(capture(bank, refunded.hold_id, 3000), Posted)
    bank.call(
        ledger.credit,
        merchant_id=MERCHANT,
        items=[CreditItem(refunded.hold_id, 3000, EUR)],
        rrpid=b"cred-1",
    )
    held = approved(bank.authorize(PAN_B, 5000, expires_at_ms=start + LIFETIME_MS))
    undo = [ReversalItem(refunded.hold_id, b"cred-1")]
    clock.now_ms = start + LIFETIME_MS + SKEW_MS // 2
    reversed_credit = bank.call(ledger.reverse_credit, merchant_id=MERCHANT, items=undo)
    assert isinstance(reversed_credit, PostingOutcome)
    assert isinstance(reversed_credit.items[0], Posted)  # the expired hold's credit
    clock.now_ms = start + LIFETIME_MS - SKEW_MS // 2
    assert capture(bank, held.hold_id, 5000) == Declined(Decline.HOLD_EXPIRED)
    card = ledger.find_card_account(PAN_B)
    assert (card.posted_debt, card.available) == (3000, 2000)


def test_a_refusal_as_expired_is_the_answer_for_every_later_clock(
    bank: Bank, clock: FakeClock
) -> None:
    start = clock.now_ms
    to_capture = approved(bank.authorize(PAN_A, 1000, expires_at_ms=start + LIFETIME_MS))
    to_reverse = approved(bank.authorize(PAN_B, 1000, expires_at_ms=start + LIFETIME_MS))

    def reverse() -> object:
        return bank.call(
            bank.ledger.reverse_authorization,
            merchant_id=MERCHANT,
            hold_id=to_reverse.hold_id,
            new_amount=0,
        )

    clock.now_ms = start + LIFETIME_MS + SKEW_MS // 2
    assert capture(bank, to_capture.hold_id, 1000) == Declined(Decline.HOLD_EXPIRED)
    assert reverse() == ReversalDeclined(Decline.HOLD_EXPIRED, authorized=0)
    clock.now_ms = start + LIFETIME_MS - SKEW_MS // 2
    assert capture(bank, to_capture.hold_id, 1000) == Declined(Decline.HOLD_EXPIRED)
    assert reverse() == ReversalDeclined(Decline.HOLD_EXPIRED, authorized=0)
    # Both releases are posted: the merchant's pending balance is down, nothing to sweep.
    assert bank.ledger.merchant_account(MERCHANT).pending == 0
    assert bank.ledger.expire_holds() == 0


def test_an_authorization_posts_the_release_of_its_cards_due_holds_only(
    bank: Bank, clock: FakeClock
) -> None:
    start = clock.now_ms
    due = [
        approved(bank.authorize(PAN_A, 700, expires_at_ms=start + LIFETIME_MS)) for _ in range(3)
    ]
    live = approved(bank.authorize(PAN_A, 500, expires_at_ms=start + 2 * LIFETIME_MS))
    others = approved(bank.authorize(PAN_B, 400, expires_at_ms=start + LIFETIME_MS))
    clock.now_ms = start + LIFETIME_MS
    approved(bank.authorize(PAN_A, 100))
    # PAN_A's three due holds are released and booked; its live hold and PAN_B's due one
    # (a card this decision did not touch) are left to their own decisions or the sweep.
    assert bank.ledger.merchant_account(MERCHANT).pending == 500 + 400 + 100
    (eur,) = bank.ledger.totals()
    assert eur.debits_pending == 1000
    clock.now_ms = start  # every later decision sees them released, whatever its clock
    assert [bank.ledger.hold(h.hold_id).status for h in due] == ["expired"] * 3
    assert bank.ledger.hold(live.hold_id).status == "pending"
    assert bank.ledger.hold(others.hold_id).status == "pending"
    assert bank.ledger.find_card_account(PAN_A).pending == 600
    clock.now_ms = start + LIFETIME_MS
    assert bank.ledger.expire_holds() == 1  # PAN_B's


def test_an_authorization_releases_a_bounded_batch_and_counts_the_rest(
    ledger: Ledger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(holds, "CARD_EXPIRE_BATCH", 2)
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_C, EXPIRY, 1000, EUR)
    bank = Bank(ledger)
    start = clock.now_ms
    for _ in range(4):
        approved(bank.authorize(PAN_C, 250, expires_at_ms=start + LIFETIME_MS))
    clock.now_ms = start + LIFETIME_MS
    # Two are released; the two beyond the batch still count: 500 is all that is free,
    # a decline on the safe side until they are released too.
    assert bank.authorize(PAN_C, 600) == Declined(Decline.INSUFFICIENT_FUNDS)
    assert ledger.merchant_account(MERCHANT).pending == 500
    approved(bank.authorize(PAN_C, 600))  # this one releases the other two first
    assert ledger.merchant_account(MERCHANT).pending == 600


def test_a_card_read_shows_the_credit_a_decision_counts_beyond_the_batch(
    ledger: Ledger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more due holds than a decision releases, a read counts the rest as held too:
    the credit it shows available is the credit an authorization is granted."""
    monkeypatch.setattr(holds, "CARD_EXPIRE_BATCH", 2)
    ledger.open_merchant_account(MERCHANT, EUR)
    bank = Bank(ledger)
    start = clock.now_ms
    twins = (PAN_B, PAN_C)  # two cards alike: one to refuse a unit more, one to grant it
    for pan in twins:
        ledger.open_card_account(pan, EXPIRY, 1000, EUR)
        for _ in range(5):
            approved(bank.authorize(pan, 200, expires_at_ms=start + LIFETIME_MS))
    clock.now_ms = start + LIFETIME_MS
    for pan in twins:
        card = ledger.find_card_account(pan)
        assert (card.pending, card.available) == (600, 400)
        assert ledger.card_account(card.account_id).available == 400
    assert bank.authorize(PAN_B, 401) == Declined(Decline.INSUFFICIENT_FUNDS)
    approved(bank.authorize(PAN_C, 400))
    # Each released two; a read counts the next two as a decision would release them.
    assert ledger.find_card_account(PAN_B).available == 800
    assert ledger.find_card_account(PAN_C).available == 400
    assert bank.authorize(PAN_B, 801) == Declined(Decline.INSUFFICIENT_FUNDS)
    approved(bank.authorize(PAN_C, 400))


def test_a_reversal_of_a_live_hold_is_untouched_by_expiry(bank: Bank, clock: FakeClock) -> None:
    auth = approved(bank.authorize(PAN_A, 1000, expires_at_ms=clock.now_ms + LIFETIME_MS))
    clock.advance(LIFETIME_MS - 1)
    reversed_auth = bank.call(
        bank.ledger.reverse_authorization,
        merchant_id=MERCHANT,
        hold_id=auth.hold_id,
        new_amount=400,
    )
    assert reversed_auth == AuthorizationReversed(auth.hold_id, 400, 600, EUR)
    assert isinstance(capture(bank, auth.hold_id, 400), Posted)
