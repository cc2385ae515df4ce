"""RRPID idempotency: stored response bytes, reuse refused, failures keep nothing (both stores)."""

from __future__ import annotations

import pytest

from gateway.ledger import (
    Authorized,
    CaptureItem,
    Decline,
    Declined,
    InvalidRequest,
    Outcome,
    Posted,
    PostingOutcome,
    RrpidReused,
)
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, MERCHANT, PAN_A, PAN_B, Bank


def authorize(bank: Bank, *, rrpid: bytes, digest: bytes, xid: bytes, amount: int = 1000) -> bytes:
    return bank.ledger.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=amount,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=xid,
        pi_digest=b"pi-" + xid,
        rrpid=rrpid,
        request_digest=digest,
        respond=bank.respond,
    )


def test_retry_returns_the_same_bytes_and_holds_once(bank: Bank) -> None:
    first = authorize(bank, rrpid=b"r-1", digest=b"d-1", xid=b"x-1")
    again = authorize(bank, rrpid=b"r-1", digest=b"d-1", xid=b"x-1")
    assert again == first
    assert len(bank.outcomes) == 1  # the response was built once
    card = bank.ledger.find_card_account(PAN_A)
    assert card.pending == 1000
    (eur,) = bank.ledger.totals()
    assert eur.debits_pending == 1000


def test_retry_is_answered_before_the_pi_replay_check(bank: Bank) -> None:
    first = authorize(bank, rrpid=b"r-1", digest=b"d-1", xid=b"x-1")
    assert authorize(bank, rrpid=b"r-1", digest=b"d-1", xid=b"x-1") == first


def test_same_rrpid_with_another_digest_is_refused(bank: Bank) -> None:
    authorize(bank, rrpid=b"r-1", digest=b"d-1", xid=b"x-1")
    with pytest.raises(RrpidReused):
        authorize(bank, rrpid=b"r-1", digest=b"d-2", xid=b"x-2", amount=5)
    assert bank.ledger.find_card_account(PAN_A).pending == 1000
    # x-2 was not consumed by the refused request.
    assert isinstance(bank.authorize(PAN_A, 5, xid=b"x-2"), Authorized)


def test_rrpid_is_one_key_across_operations(bank: Bank) -> None:
    authorize(bank, rrpid=b"r-1", digest=b"d-1", xid=b"x-1")
    with pytest.raises(RrpidReused):
        bank.call(
            bank.ledger.capture,
            merchant_id=MERCHANT,
            items=[CaptureItem("hold-any", 1, EUR)],
            rrpid=b"r-1",
            request_digest=b"d-9",
        )


def test_a_declined_authorization_is_replayed_too(bank: Bank) -> None:
    declined = bank.ledger.authorize(
        pan=PAN_B,
        pan_expiry=EXPIRY,
        amount=999_999,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"x-1",
        pi_digest=b"pi",
        rrpid=b"r-1",
        request_digest=b"d-1",
        respond=bank.respond,
    )
    assert bank.last() == Declined(Decline.INSUFFICIENT_FUNDS)
    again = bank.ledger.authorize(
        pan=PAN_B,
        pan_expiry=EXPIRY,
        amount=999_999,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"x-1",
        pi_digest=b"pi",
        rrpid=b"r-1",
        request_digest=b"d-1",
        respond=bank.respond,
    )
    assert again == declined and len(bank.outcomes) == 1


def test_capture_retry_posts_once(bank: Bank) -> None:
    auth = bank.authorize(PAN_A, 3000)
    assert isinstance(auth, Authorized)
    items = [CaptureItem(auth.hold_id, 1000, EUR)]
    responses = {
        bank.ledger.capture(
            merchant_id=MERCHANT,
            items=items,
            rrpid=b"cap-1",
            request_digest=b"cap-digest",
            respond=bank.respond,
        )
        for _ in range(3)
    }
    assert len(responses) == 1
    assert bank.ledger.hold(auth.hold_id).captured == 1000
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 1000


def test_batch_close_retry_returns_the_same_bytes(bank: Bank) -> None:
    bank.call(bank.ledger.open_batch, MERCHANT)
    first = bank.ledger.close_batch(
        MERCHANT, rrpid=b"close-1", request_digest=b"d", respond=bank.respond
    )
    again = bank.ledger.close_batch(
        MERCHANT, rrpid=b"close-1", request_digest=b"d", respond=bank.respond
    )
    assert again == first


def test_failing_respond_keeps_nothing(bank: Bank) -> None:
    def broken(outcome: Outcome) -> bytes:
        raise RuntimeError("signing key unavailable")

    with pytest.raises(RuntimeError, match="signing key unavailable"):
        bank.ledger.authorize(
            pan=PAN_A,
            pan_expiry=EXPIRY,
            amount=1000,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=b"x-1",
            pi_digest=b"pi",
            rrpid=b"r-1",
            request_digest=b"d-1",
            respond=broken,
        )
    assert bank.ledger.find_card_account(PAN_A).pending == 0
    # Neither the RRPID nor the PI was used up: the retry decides afresh.
    authorize(bank, rrpid=b"r-1", digest=b"d-1", xid=b"x-1")
    assert isinstance(bank.last(), Authorized)


def test_respond_must_return_bytes(bank: Bank) -> None:
    with pytest.raises(TypeError):
        bank.ledger.authorize(
            pan=PAN_A,
            pan_expiry=EXPIRY,
            amount=1000,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=b"x-1",
            pi_digest=b"pi",
            rrpid=b"r-1",
            request_digest=b"d-1",
            respond=lambda outcome: "not bytes",  # type: ignore[arg-type,return-value]
        )
    assert bank.ledger.find_card_account(PAN_A).pending == 0


def test_item_outcomes_are_replayed_not_redecided(bank: Bank) -> None:
    auth = bank.authorize(PAN_A, 3000)
    assert isinstance(auth, Authorized)
    kwargs = {
        "merchant_id": MERCHANT,
        "items": [CaptureItem(auth.hold_id, 3000, EUR)],
        "rrpid": b"cap-1",
        "request_digest": b"d",
        "respond": bank.respond,
    }
    first = bank.ledger.capture(**kwargs)  # type: ignore[arg-type]
    outcome = bank.last()
    assert isinstance(outcome, PostingOutcome) and isinstance(outcome.items[0], Posted)
    # The hold is now fully captured; a re-decision would decline, the replay must not.
    assert bank.ledger.capture(**kwargs) == first  # type: ignore[arg-type]


def test_gateway_decline_is_stored_and_replayed(bank: Bank) -> None:
    first = bank.ledger.decline(
        Decline.AMOUNT_MISMATCH, rrpid=b"r-1", request_digest=b"d-1", respond=bank.respond
    )
    again = bank.ledger.decline(
        Decline.AMOUNT_MISMATCH, rrpid=b"r-1", request_digest=b"d-1", respond=bank.respond
    )
    assert again == first and bank.outcomes == [Declined(Decline.AMOUNT_MISMATCH)]
    with pytest.raises(RrpidReused):
        authorize(bank, rrpid=b"r-1", digest=b"d-2", xid=b"x-1")
    # Nothing was held, and the PI the issuer never saw is still usable.
    assert bank.ledger.find_card_account(PAN_A).pending == 0
    assert isinstance(bank.authorize(PAN_A, 100, xid=b"x-1"), Authorized)


def test_only_gateway_declines_may_be_stored_by_the_gateway(bank: Bank) -> None:
    with pytest.raises(InvalidRequest, match="the gateway does not decide insufficient-funds"):
        bank.ledger.decline(
            Decline.INSUFFICIENT_FUNDS, rrpid=b"r-1", request_digest=b"d", respond=bank.respond
        )
    assert bank.outcomes == []
