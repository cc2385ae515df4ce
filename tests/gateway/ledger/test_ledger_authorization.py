"""Authorization: approvals, every decline, PI replay, reversal and hold expiry (both stores)."""

from __future__ import annotations

import pytest

from gateway.ledger import (
    AuthorizationReversed,
    Authorized,
    CaptureItem,
    Decline,
    Declined,
    InvalidRequest,
    PiPreviouslyUsed,
    Posted,
    PostingOutcome,
    ReversalDeclined,
    TransactionKind,
    UnknownMerchant,
)
from gateway.ledger.ledger import HOLD_LIFETIME_MS
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PAN_B,
    PAN_C,
    USD,
    Bank,
    FakeClock,
)

DAY_MS = 24 * 3600 * 1000


def approved(outcome: object) -> Authorized:
    assert isinstance(outcome, Authorized), outcome
    return outcome


def test_approval_places_a_hold(bank: Bank, clock: FakeClock) -> None:
    auth = approved(bank.authorize(PAN_A, 2500))
    assert (auth.amount, auth.currency, auth.capture) == (2500, EUR, None)
    assert auth.expires_at_ms == clock.now_ms + HOLD_LIFETIME_MS
    card = bank.ledger.find_card_account(PAN_A)
    assert auth.card_account_id == card.account_id
    assert (card.posted_debt, card.pending, card.available) == (0, 2500, 7500)
    hold = bank.ledger.hold(auth.hold_id)
    assert (hold.amount, hold.pending, hold.captured, hold.status) == (2500, 2500, 0, "pending")
    assert bank.ledger.merchant_account(MERCHANT).pending == 2500


def test_whole_available_credit_can_be_authorized(bank: Bank) -> None:
    approved(bank.authorize(PAN_A, 6000))
    approved(bank.authorize(PAN_A, 4000))
    assert bank.authorize(PAN_A, 1) == Declined(Decline.INSUFFICIENT_FUNDS)
    assert bank.ledger.find_card_account(PAN_A).available == 0


def test_insufficient_funds(bank: Bank) -> None:
    assert bank.authorize(PAN_B, 5001) == Declined(Decline.INSUFFICIENT_FUNDS)
    assert bank.ledger.find_card_account(PAN_B).pending == 0


def test_unknown_account(bank: Bank) -> None:
    assert bank.authorize(PAN_C, 100) == Declined(Decline.UNKNOWN_ACCOUNT)


def test_blocked_account(bank: Bank) -> None:
    card = bank.ledger.find_card_account(PAN_A)
    bank.ledger.block_card_account(card.account_id)
    assert bank.authorize(PAN_A, 100) == Declined(Decline.BLOCKED_ACCOUNT)
    bank.ledger.unblock_card_account(card.account_id)
    approved(bank.authorize(PAN_A, 100))


def test_closed_account(bank: Bank) -> None:
    bank.ledger.close_card_account(bank.ledger.find_card_account(PAN_A).account_id)
    assert bank.authorize(PAN_A, 100) == Declined(Decline.CLOSED_ACCOUNT)


def test_expired_card(bank: Bank) -> None:
    bank.ledger.open_card_account(PAN_C, "202509", 1000, EUR)  # the clock is in 2025-10
    assert bank.authorize(PAN_C, 100, pan_expiry="202509") == Declined(Decline.EXPIRED_CARD)


def test_card_valid_through_its_expiry_month(bank: Bank) -> None:
    bank.ledger.open_card_account(PAN_C, "202510", 1000, EUR)
    approved(bank.authorize(PAN_C, 100, pan_expiry="202510"))


def test_pan_data_expiry_must_match_the_one_on_file(bank: Bank) -> None:
    assert bank.authorize(PAN_A, 100, pan_expiry="203011") == Declined(Decline.EXPIRED_CARD)


def test_currency_mismatch_with_card(bank: Bank) -> None:
    bank.ledger.open_merchant_account("usd-shop", USD)
    outcome = bank.authorize(PAN_A, 100, currency=USD, merchant="usd-shop")
    assert outcome == Declined(Decline.CURRENCY_MISMATCH)


def test_currency_mismatch_with_merchant(bank: Bank) -> None:
    bank.ledger.open_merchant_account("usd-shop", USD)
    outcome = bank.authorize(PAN_A, 100, currency=EUR, merchant="usd-shop")
    assert outcome == Declined(Decline.CURRENCY_MISMATCH)


def test_closed_is_reported_before_insufficient_funds(bank: Bank) -> None:
    bank.ledger.close_card_account(bank.ledger.find_card_account(PAN_B).account_id)
    assert bank.authorize(PAN_B, 999_999) == Declined(Decline.CLOSED_ACCOUNT)


def test_unknown_merchant_is_an_error_and_uses_no_pi(bank: Bank) -> None:
    with pytest.raises(UnknownMerchant):
        bank.authorize(PAN_A, 100, merchant="nobody", xid=b"x" * 32)
    # The failed call consumed nothing: the same PI can still be decided.
    approved(bank.authorize(PAN_A, 100, xid=b"x" * 32))


def test_pi_replay_with_the_same_xid_and_digest_is_refused(bank: Bank) -> None:
    xid = bank.fresh("xid")
    bank.ledger.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=100,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=xid,
        pi_digest=b"pi-1",
        rrpid=b"rrpid-1",
        request_digest=b"req-1",
        respond=bank.respond,
    )
    with pytest.raises(PiPreviouslyUsed):
        bank.ledger.authorize(
            pan=PAN_A,
            pan_expiry=EXPIRY,
            amount=100,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=xid,
            pi_digest=b"pi-1",
            rrpid=b"rrpid-2",
            request_digest=b"req-2",
            respond=bank.respond,
        )
    assert bank.ledger.find_card_account(PAN_A).pending == 100


def test_pi_replay_with_the_same_xid_alone_is_refused_and_changes_nothing(bank: Bank) -> None:
    xid = bank.fresh("xid")
    approved(bank.authorize(PAN_A, 100, xid=xid))
    before = bank.ledger.find_card_account(PAN_A)
    responses = len(bank.outcomes)
    with pytest.raises(PiPreviouslyUsed):
        bank.authorize(PAN_A, 200, xid=xid)
    assert bank.ledger.find_card_account(PAN_A) == before
    assert len(bank.outcomes) == responses  # no response was built for the replay


def test_a_declined_pi_is_used_too(bank: Bank) -> None:
    xid = bank.fresh("xid")
    assert bank.authorize(PAN_B, 9999, xid=xid) == Declined(Decline.INSUFFICIENT_FUNDS)
    with pytest.raises(PiPreviouslyUsed):
        bank.authorize(PAN_B, 1, xid=xid)


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 0},
        {"amount": -5},
        {"amount": 10**13},
        {"currency": 0},
        {"pan": "12345"},
        {"pan_expiry": "2030"},
        {"xid": b"x" * 65},
        {"rrpid": b"r" * 65},
    ],
)
def test_malformed_authorization_is_refused_before_any_state(
    bank: Bank, change: dict[str, object]
) -> None:
    (argument,) = change
    with pytest.raises(InvalidRequest, match=f"^{argument} "):
        bank.authorize(**change)  # type: ignore[arg-type]
    assert bank.ledger.find_card_account(PAN_A).pending == 0


def test_hold_must_expire_in_the_future(bank: Bank, clock: FakeClock) -> None:
    with pytest.raises(InvalidRequest, match=r"^hold_expires_at_ms "):
        bank.authorize(PAN_A, 100, expires_at_ms=clock.now_ms)


def test_sale_captures_at_once(bank: Bank) -> None:
    auth = approved(bank.authorize(PAN_A, 1200, capture_now=True))
    assert isinstance(auth.capture, Posted)
    assert (auth.capture.kind, auth.capture.amount, auth.capture.batch_seq) == (
        TransactionKind.CAPTURE,
        1200,
        1,
    )
    card = bank.ledger.find_card_account(PAN_A)
    assert (card.posted_debt, card.pending, card.available) == (1200, 0, 8800)
    assert bank.ledger.hold(auth.hold_id).status == "closed"
    assert bank.ledger.merchant_account(MERCHANT).balance == 1200


def test_full_authorization_reversal_releases_the_hold(bank: Bank) -> None:
    auth = approved(bank.authorize(PAN_A, 3000))
    outcome = bank.call(
        bank.ledger.reverse_authorization, merchant_id=MERCHANT, hold_id=auth.hold_id, new_amount=0
    )
    assert outcome == AuthorizationReversed(
        hold_id=auth.hold_id, amount=0, released=3000, currency=EUR
    )
    assert bank.ledger.find_card_account(PAN_A).available == 10_000
    assert bank.ledger.hold(auth.hold_id).status == "closed"
    assert bank.ledger.merchant_account(MERCHANT).pending == 0


def test_partial_authorization_reversal_reduces_the_hold(bank: Bank) -> None:
    auth = approved(bank.authorize(PAN_A, 3000))
    outcome = bank.call(
        bank.ledger.reverse_authorization,
        merchant_id=MERCHANT,
        hold_id=auth.hold_id,
        new_amount=1000,
    )
    assert outcome == AuthorizationReversed(
        hold_id=auth.hold_id, amount=1000, released=2000, currency=EUR
    )
    assert bank.ledger.find_card_account(PAN_A).pending == 1000
    # Only the reduced amount can be captured now.
    capture = bank.call(
        bank.ledger.capture,
        merchant_id=MERCHANT,
        items=[CaptureItem(auth.hold_id, 1001, EUR)],
    )
    assert capture == PostingOutcome((Declined(Decline.AMOUNT_EXCEEDS_AUTHORIZATION),))


def test_authorization_reversal_cannot_go_below_captured_or_up(bank: Bank) -> None:
    auth = approved(bank.authorize(PAN_A, 3000))
    bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(auth.hold_id, 2000, EUR)]
    )
    for new_amount in (1999, 3000, 3001):
        outcome = bank.call(
            bank.ledger.reverse_authorization,
            merchant_id=MERCHANT,
            hold_id=auth.hold_id,
            new_amount=new_amount,
        )
        # Refused, and the answer says what stands: the whole 3000, 2000 of it captured.
        assert outcome == ReversalDeclined(Decline.INVALID_AMOUNT, authorized=3000), new_amount
    released = bank.call(
        bank.ledger.reverse_authorization,
        merchant_id=MERCHANT,
        hold_id=auth.hold_id,
        new_amount=2000,
    )
    assert released == AuthorizationReversed(auth.hold_id, amount=2000, released=1000, currency=EUR)
    assert bank.ledger.hold(auth.hold_id).status == "closed"


def test_authorization_reversal_of_unknown_or_foreign_hold(bank: Bank) -> None:
    bank.ledger.open_merchant_account("other-shop", EUR)
    auth = approved(bank.authorize(PAN_A, 3000))
    for merchant, hold_id in (("other-shop", auth.hold_id), (MERCHANT, "hold-nope")):
        outcome = bank.call(
            bank.ledger.reverse_authorization, merchant_id=merchant, hold_id=hold_id, new_amount=0
        )
        # Nothing of this merchant's stands under that id; the other's hold is not told.
        assert outcome == ReversalDeclined(Decline.UNKNOWN_HOLD, authorized=0)
    assert bank.ledger.hold(auth.hold_id).pending == 3000


def test_expired_hold_stops_counting_at_once(bank: Bank, clock: FakeClock) -> None:
    auth = approved(bank.authorize(PAN_A, 8000, expires_at_ms=clock.now_ms + DAY_MS))
    assert bank.authorize(PAN_A, 5000) == Declined(Decline.INSUFFICIENT_FUNDS)
    clock.advance(DAY_MS)
    assert bank.ledger.hold(auth.hold_id).status == "expired"
    assert bank.ledger.find_card_account(PAN_A).available == 10_000
    approved(bank.authorize(PAN_A, 5000))


def test_expired_hold_cannot_be_captured_or_reversed(bank: Bank, clock: FakeClock) -> None:
    auth = approved(bank.authorize(PAN_A, 1000, expires_at_ms=clock.now_ms + DAY_MS))
    clock.advance(DAY_MS + 1)
    capture = bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(auth.hold_id, 10, EUR)]
    )
    assert capture == PostingOutcome((Declined(Decline.HOLD_EXPIRED),))
    reversal = bank.call(
        bank.ledger.reverse_authorization, merchant_id=MERCHANT, hold_id=auth.hold_id, new_amount=0
    )
    assert reversal == ReversalDeclined(Decline.HOLD_EXPIRED, authorized=0)


def test_a_refused_reversal_says_what_stands_not_what_was_first_authorized(
    bank: Bank, clock: FakeClock
) -> None:
    auth = approved(bank.authorize(PAN_A, 3000, expires_at_ms=clock.now_ms + DAY_MS))

    def reverse(new_amount: int) -> object:
        return bank.call(
            bank.ledger.reverse_authorization,
            merchant_id=MERCHANT,
            hold_id=auth.hold_id,
            new_amount=new_amount,
        )

    assert isinstance(reverse(1000), AuthorizationReversed)
    # A merchant still holding the 3000 token asks for 2000: the authorization is 1000.
    assert reverse(2000) == ReversalDeclined(Decline.INVALID_AMOUNT, authorized=1000)
    bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(auth.hold_id, 400, EUR)]
    )
    assert reverse(300) == ReversalDeclined(Decline.INVALID_AMOUNT, authorized=1000)
    # Once expired, only the captured 400 stands; the refusal posted the release (expiry
    # sticks), so the sweep finds nothing left and the answer stays the same.
    clock.advance(DAY_MS)
    assert reverse(0) == ReversalDeclined(Decline.HOLD_EXPIRED, authorized=400)
    assert bank.ledger.hold(auth.hold_id).still_authorized == 400
    assert bank.ledger.expire_holds() == 0
    assert reverse(400) == ReversalDeclined(Decline.HOLD_EXPIRED, authorized=400)
    assert bank.ledger.hold(auth.hold_id).still_authorized == 400


def test_expiry_sweep_posts_the_release(bank: Bank, clock: FakeClock) -> None:
    short = approved(bank.authorize(PAN_A, 1000, expires_at_ms=clock.now_ms + DAY_MS))
    partly = approved(bank.authorize(PAN_A, 2000, expires_at_ms=clock.now_ms + DAY_MS))
    long = approved(bank.authorize(PAN_B, 500, expires_at_ms=clock.now_ms + 30 * DAY_MS))
    bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(partly.hold_id, 500, EUR)]
    )
    assert bank.ledger.expire_holds() == 0
    clock.advance(DAY_MS)
    assert bank.ledger.expire_holds() == 2
    assert bank.ledger.expire_holds() == 0
    for hold_id, captured in ((short.hold_id, 0), (partly.hold_id, 500)):
        hold = bank.ledger.hold(hold_id)
        assert (hold.status, hold.pending, hold.captured) == ("expired", 0, captured)
    assert bank.ledger.hold(long.hold_id).status == "pending"
    # The released amounts are off the books' pending sums, not just out of view.
    assert bank.ledger.merchant_account(MERCHANT).pending == 500
    (eur,) = bank.ledger.totals()
    assert eur.debits_pending == eur.credits_pending == 500
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 500
