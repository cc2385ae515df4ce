"""Captures, credits and their reversals: the two-phase limits (both stores)."""

from __future__ import annotations

import pytest

from gateway.ledger import (
    Authorized,
    CaptureItem,
    CreditItem,
    Decline,
    Declined,
    InvalidRequest,
    Posted,
    PostingOutcome,
    ReversalItem,
    TransactionKind,
    UnknownMerchant,
)
from tests.gateway.ledger.ledger_support import EUR, MERCHANT, PAN_A, PAN_B, USD, Bank, FakeClock


def hold_of(bank: Bank, pan: str, amount: int) -> str:
    outcome = bank.authorize(pan, amount)
    assert isinstance(outcome, Authorized), outcome
    return outcome.hold_id


def capture(bank: Bank, *items: CaptureItem, rrpid: bytes | None = None) -> PostingOutcome:
    kwargs = {"rrpid": rrpid} if rrpid else {}
    outcome = bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=list(items), **kwargs)
    assert isinstance(outcome, PostingOutcome)
    return outcome


def credit(bank: Bank, *items: CreditItem, rrpid: bytes | None = None) -> PostingOutcome:
    kwargs = {"rrpid": rrpid} if rrpid else {}
    outcome = bank.call(bank.ledger.credit, merchant_id=MERCHANT, items=list(items), **kwargs)
    assert isinstance(outcome, PostingOutcome)
    return outcome


def reverse(bank: Bank, method: str, *items: ReversalItem) -> PostingOutcome:
    outcome = bank.call(getattr(bank.ledger, method), merchant_id=MERCHANT, items=list(items))
    assert isinstance(outcome, PostingOutcome)
    return outcome


def test_capture_posts_card_to_merchant(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    (posted,) = capture(bank, CaptureItem(hold, 3000, EUR)).items
    assert isinstance(posted, Posted)
    assert (posted.kind, posted.hold_id, posted.amount, posted.currency) == (
        TransactionKind.CAPTURE,
        hold,
        3000,
        EUR,
    )
    card = bank.ledger.find_card_account(PAN_A)
    assert (card.posted_debt, card.pending, card.available) == (3000, 0, 7000)
    merchant = bank.ledger.merchant_account(MERCHANT)
    assert (merchant.balance, merchant.pending) == (3000, 0)
    assert bank.ledger.hold(hold).status == "closed"


def test_partial_captures_sum_at_most_the_authorization(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    for amount in (1000, 1500):
        assert isinstance(capture(bank, CaptureItem(hold, amount, EUR)).items[0], Posted)
    assert capture(bank, CaptureItem(hold, 501, EUR)).items == (
        Declined(Decline.AMOUNT_EXCEEDS_AUTHORIZATION),
    )
    assert isinstance(capture(bank, CaptureItem(hold, 500, EUR)).items[0], Posted)
    assert capture(bank, CaptureItem(hold, 1, EUR)).items == (
        Declined(Decline.AMOUNT_EXCEEDS_AUTHORIZATION),
    )
    h = bank.ledger.hold(hold)
    assert (h.captured, h.pending, h.status) == (3000, 0, "closed")


def test_capture_above_the_authorization_is_refused(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    assert capture(bank, CaptureItem(hold, 3001, EUR)).items == (
        Declined(Decline.AMOUNT_EXCEEDS_AUTHORIZATION),
    )
    assert bank.ledger.hold(hold).pending == 3000
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 0


def test_capture_in_another_currency_is_refused(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    assert capture(bank, CaptureItem(hold, 100, USD)).items == (
        Declined(Decline.CURRENCY_MISMATCH),
    )


def test_unknown_and_foreign_holds_look_the_same(bank: Bank) -> None:
    bank.ledger.open_merchant_account("other-shop", EUR)
    hold = hold_of(bank, PAN_A, 3000)
    foreign = bank.call(
        bank.ledger.capture, merchant_id="other-shop", items=[CaptureItem(hold, 10, EUR)]
    )
    assert foreign == PostingOutcome((Declined(Decline.UNKNOWN_HOLD),))
    assert capture(bank, CaptureItem("hold-nope", 10, EUR)).items == (
        Declined(Decline.UNKNOWN_HOLD),
    )
    assert bank.ledger.hold(hold).pending == 3000


def test_capture_items_are_decided_one_by_one(bank: Bank) -> None:
    a, b = hold_of(bank, PAN_A, 1000), hold_of(bank, PAN_B, 1000)
    outcome = capture(
        bank, CaptureItem(a, 1000, EUR), CaptureItem(b, 5000, EUR), CaptureItem("hold-x", 1, EUR)
    )
    assert isinstance(outcome.items[0], Posted)
    assert outcome.items[1:] == (
        Declined(Decline.AMOUNT_EXCEEDS_AUTHORIZATION),
        Declined(Decline.UNKNOWN_HOLD),
    )
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 1000
    assert bank.ledger.find_card_account(PAN_B).pending == 1000


def test_one_request_names_each_hold_once(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    with pytest.raises(InvalidRequest, match=r"^items may name each hold only once"):
        capture(bank, CaptureItem(hold, 1000, EUR), CaptureItem(hold, 1000, EUR))
    with pytest.raises(InvalidRequest, match=r"^items: a request carries 1 to"):
        capture(bank)
    with pytest.raises(InvalidRequest, match=r"^amount "):
        capture(bank, CaptureItem(hold, 0, EUR))


def test_capture_by_unknown_merchant_is_an_error(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    with pytest.raises(UnknownMerchant):
        bank.call(bank.ledger.capture, merchant_id="nobody", items=[CaptureItem(hold, 1, EUR)])


def test_credit_at_most_captured_minus_credited(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    assert credit(bank, CreditItem(hold, 1, EUR)).items == (
        Declined(Decline.AMOUNT_EXCEEDS_CAPTURED),
    )
    capture(bank, CaptureItem(hold, 2000, EUR))
    (refund,) = credit(bank, CreditItem(hold, 1500, EUR)).items
    assert isinstance(refund, Posted) and refund.kind is TransactionKind.CREDIT
    assert credit(bank, CreditItem(hold, 501, EUR)).items == (
        Declined(Decline.AMOUNT_EXCEEDS_CAPTURED),
    )
    assert isinstance(credit(bank, CreditItem(hold, 500, EUR)).items[0], Posted)
    card = bank.ledger.find_card_account(PAN_A)
    assert (card.posted_debt, card.pending) == (0, 1000)
    assert bank.ledger.merchant_account(MERCHANT).balance == 0
    assert bank.ledger.hold(hold).refundable == 0


def test_credit_in_another_currency_is_refused(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 3000, EUR))
    assert credit(bank, CreditItem(hold, 10, USD)).items == (Declined(Decline.CURRENCY_MISMATCH),)


def test_capture_reversal_undoes_one_capture(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 1000, EUR), rrpid=b"cap-1")
    capture(bank, CaptureItem(hold, 500, EUR), rrpid=b"cap-2")
    (undone,) = reverse(bank, "reverse_capture", ReversalItem(hold, b"cap-1")).items
    assert isinstance(undone, Posted)
    assert (undone.kind, undone.amount) == (TransactionKind.CAPTURE_REVERSAL, 1000)
    card = bank.ledger.find_card_account(PAN_A)
    assert (card.posted_debt, card.pending) == (500, 1500)
    assert bank.ledger.merchant_account(MERCHANT).balance == 500
    h = bank.ledger.hold(hold)
    # The undone capture does not come back as authorization: the sum of captures stays.
    assert (h.captured, h.capture_reversed, h.refundable) == (1500, 1000, 500)
    assert capture(bank, CaptureItem(hold, 1501, EUR)).items == (
        Declined(Decline.AMOUNT_EXCEEDS_AUTHORIZATION),
    )


def test_capture_reversal_once_only(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 1000, EUR), rrpid=b"cap-1")
    reverse(bank, "reverse_capture", ReversalItem(hold, b"cap-1"))
    assert reverse(bank, "reverse_capture", ReversalItem(hold, b"cap-1")).items == (
        Declined(Decline.ORIGINAL_REVERSED),
    )


def test_capture_reversal_of_unknown_capture(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 1000, EUR), rrpid=b"cap-1")
    for item in (ReversalItem(hold, b"cap-9"), ReversalItem("hold-nope", b"cap-1")):
        assert reverse(bank, "reverse_capture", item).items == (Declined(Decline.UNKNOWN_ORIGINAL),)


def test_refunded_capture_cannot_be_reversed(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 1000, EUR), rrpid=b"cap-1")
    credit(bank, CreditItem(hold, 600, EUR))
    assert reverse(bank, "reverse_capture", ReversalItem(hold, b"cap-1")).items == (
        Declined(Decline.ORIGINAL_REFUNDED),
    )
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 400


def test_credit_reversal_undoes_one_credit(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 3000, EUR))
    credit(bank, CreditItem(hold, 1000, EUR), rrpid=b"cred-1")
    (undone,) = reverse(bank, "reverse_credit", ReversalItem(hold, b"cred-1")).items
    assert isinstance(undone, Posted)
    assert (undone.kind, undone.amount) == (TransactionKind.CREDIT_REVERSAL, 1000)
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 3000
    assert bank.ledger.merchant_account(MERCHANT).balance == 3000
    assert bank.ledger.hold(hold).refundable == 3000
    assert reverse(bank, "reverse_credit", ReversalItem(hold, b"cred-1")).items == (
        Declined(Decline.ORIGINAL_REVERSED),
    )
    assert reverse(bank, "reverse_credit", ReversalItem(hold, b"cred-2")).items == (
        Declined(Decline.UNKNOWN_ORIGINAL),
    )


def test_credit_reversal_never_takes_the_card_over_its_limit(bank: Bank) -> None:
    hold = hold_of(bank, PAN_B, 5000)  # limit 5000
    capture(bank, CaptureItem(hold, 5000, EUR))
    credit(bank, CreditItem(hold, 2000, EUR), rrpid=b"cred-1")
    hold_of(bank, PAN_B, 1500)  # spend part of the refunded credit
    assert reverse(bank, "reverse_credit", ReversalItem(hold, b"cred-1")).items == (
        Declined(Decline.INSUFFICIENT_FUNDS),
    )
    card = bank.ledger.find_card_account(PAN_B)
    assert card.posted_debt + card.pending <= card.credit_limit


def test_captures_still_post_after_the_card_is_blocked(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    bank.ledger.block_card_account(bank.ledger.find_card_account(PAN_A).account_id)
    assert isinstance(capture(bank, CaptureItem(hold, 3000, EUR)).items[0], Posted)
    assert isinstance(credit(bank, CreditItem(hold, 3000, EUR)).items[0], Posted)


def test_a_reversal_that_names_another_amount_is_refused(bank: Bank) -> None:
    # A reversal undoes its original in full: a request for another sum is a data
    # mismatch, and must not move the original's (larger or smaller) amount instead.
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 1000, EUR), rrpid=b"cap-1")
    credit(bank, CreditItem(hold, 400, EUR), rrpid=b"cred-1")
    for method, original, asked in (
        ("reverse_credit", b"cred-1", 100),
        ("reverse_credit", b"cred-1", 401),
        ("reverse_capture", b"cap-1", 600),
    ):
        assert reverse(bank, method, ReversalItem(hold, original, amount=asked)).items == (
            Declined(Decline.INVALID_AMOUNT),
        )
    h = bank.ledger.hold(hold)
    assert (h.capture_reversed, h.credit_reversed) == (0, 0)
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 600
    (undone,) = reverse(bank, "reverse_credit", ReversalItem(hold, b"cred-1", amount=400)).items
    assert isinstance(undone, Posted) and undone.amount == 400
    (undone,) = reverse(bank, "reverse_capture", ReversalItem(hold, b"cap-1", amount=1000)).items
    assert isinstance(undone, Posted) and undone.amount == 1000
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 0


def test_a_reversal_amount_must_be_a_positive_integer(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 1000, EUR), rrpid=b"cap-1")
    for bad in (0, -1000, True):
        with pytest.raises(InvalidRequest, match=r"^amount "):
            reverse(bank, "reverse_capture", ReversalItem(hold, b"cap-1", amount=bad))
    assert bank.ledger.hold(hold).capture_reversed == 0


def test_another_merchants_hold_cannot_be_credited_or_reversed(bank: Bank) -> None:
    bank.ledger.open_merchant_account("other-shop", EUR)
    hold = hold_of(bank, PAN_A, 3000)
    capture(bank, CaptureItem(hold, 2000, EUR), rrpid=b"cap-1")
    credit(bank, CreditItem(hold, 500, EUR), rrpid=b"cred-1")

    def by_other(method: str, item: object) -> object:
        return bank.call(getattr(bank.ledger, method), merchant_id="other-shop", items=[item])

    assert by_other("credit", CreditItem(hold, 100, EUR)) == PostingOutcome(
        (Declined(Decline.UNKNOWN_HOLD),)
    )
    for method, original in (("reverse_capture", b"cap-1"), ("reverse_credit", b"cred-1")):
        assert by_other(method, ReversalItem(hold, original)) == PostingOutcome(
            (Declined(Decline.UNKNOWN_ORIGINAL),)
        )
    h = bank.ledger.hold(hold)
    assert (h.credited, h.capture_reversed, h.credit_reversed) == (500, 0, 0)
    assert bank.ledger.merchant_account("other-shop").balance == 0
    assert bank.ledger.merchant_account(MERCHANT).balance == 1500


def test_capture_at_the_expiry_instant_is_refused(bank: Bank, clock: FakeClock) -> None:
    # At expires_at_ms the hold already stopped counting against the card's credit, so a
    # capture then would spend credit the card was given back.
    hold = bank.authorize(PAN_A, 1000, expires_at_ms=clock.now_ms + 60_000)
    assert isinstance(hold, Authorized)
    assert isinstance(capture(bank, CaptureItem(hold.hold_id, 400, EUR)).items[0], Posted)
    clock.advance(60_000)
    assert bank.ledger.find_card_account(PAN_A).pending == 0
    assert capture(bank, CaptureItem(hold.hold_id, 1, EUR)).items == (
        Declined(Decline.HOLD_EXPIRED),
    )
    # The refusal posted the release: the sweep finds nothing left.
    assert bank.ledger.expire_holds() == 0
    assert capture(bank, CaptureItem(hold.hold_id, 1, EUR)).items == (
        Declined(Decline.HOLD_EXPIRED),
    )
    # What was captured can still be refunded after the hold expired.
    assert isinstance(credit(bank, CreditItem(hold.hold_id, 400, EUR)).items[0], Posted)
    assert credit(bank, CreditItem(hold.hold_id, 1, EUR)).items == (
        Declined(Decline.AMOUNT_EXCEEDS_CAPTURED),
    )
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 0


def test_credit_reversal_counts_an_expired_hold_as_released(bank: Bank, clock: FakeClock) -> None:
    # The card's limit is checked against what is held now: an expired hold, swept or
    # not, no longer takes credit, so the reversal fits.
    hold = hold_of(bank, PAN_B, 3000)  # limit 5000
    capture(bank, CaptureItem(hold, 3000, EUR))
    credit(bank, CreditItem(hold, 3000, EUR), rrpid=b"cred-1")
    bank.authorize(PAN_B, 4000, expires_at_ms=clock.now_ms + 60_000)
    assert reverse(bank, "reverse_credit", ReversalItem(hold, b"cred-1")).items == (
        Declined(Decline.INSUFFICIENT_FUNDS),
    )
    clock.advance(60_000)
    assert isinstance(
        reverse(bank, "reverse_credit", ReversalItem(hold, b"cred-1")).items[0], Posted
    )
    card = bank.ledger.find_card_account(PAN_B)
    assert (card.posted_debt, card.pending) == (3000, 0)
