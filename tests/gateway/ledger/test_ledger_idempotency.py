"""RRPID idempotency: stored response bytes, reuse refused, a decision answered once (both
stores)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from gateway.ledger import (
    AnswerNotStored,
    Authorized,
    CaptureItem,
    Decline,
    Declined,
    InvalidRequest,
    Ledger,
    LedgerKeys,
    Outcome,
    PiPreviouslyUsed,
    Posted,
    PostingOutcome,
    PrebuiltApproval,
    RrpidReused,
    StoreUnavailable,
    Unanswered,
    idempotency,
)
from gateway.ledger.store import LedgerStore, Transaction
from setcore import freshness
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PAN_B,
    Backend,
    Bank,
    FakeClock,
)

R = TypeVar("R")


def authorize(
    bank: Bank,
    *,
    rrpid: bytes = b"r-1",
    digest: bytes = b"d-1",
    xid: bytes = b"x-1",
    amount: int = 1000,
    respond: Callable[[Outcome], bytes] | None = None,
    **extra: Any,
) -> bytes:
    """Authorize on PAN_A; ``respond`` is the bank's unless given."""
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
        respond=respond or bank.respond,
        **extra,
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


def _answers_the_stored_decision(bank: Bank) -> None:
    """The decision stands without its answer; the retry answers it and decides nothing."""
    card = bank.ledger.find_card_account(PAN_A)
    assert card.pending == 1000  # decided once, committed, hold placed
    answered = authorize(bank)
    (outcome,) = bank.outcomes  # the retry was asked to answer the stored outcome
    assert isinstance(outcome, Authorized) and outcome.amount == 1000
    assert bank.ledger.find_card_account(PAN_A).pending == 1000  # not decided again
    # From now on the stored bytes, without building them again.
    assert authorize(bank) == answered
    assert len(bank.outcomes) == 1
    # The PI was used by the decision: another request with it is a replay.
    with pytest.raises(PiPreviouslyUsed):
        authorize(bank, rrpid=b"r-2", digest=b"d-2", xid=b"x-1")
    bank.ledger.check_balanced()


def test_a_failing_respond_leaves_the_decision_for_a_retry_to_answer(bank: Bank) -> None:
    def broken(outcome: Outcome) -> bytes:
        raise RuntimeError("signing key unavailable")

    with pytest.raises(AnswerNotStored, match="RuntimeError") as raised:
        authorize(bank, respond=broken)
    assert str(raised.value.__cause__) == "signing key unavailable"
    _answers_the_stored_decision(bank)


def test_respond_must_return_bytes(bank: Bank) -> None:
    with pytest.raises(AnswerNotStored) as raised:
        authorize(bank, respond=lambda outcome: "not bytes")  # type: ignore[arg-type,return-value]
    assert isinstance(raised.value.__cause__, TypeError)
    assert "respond must return bytes" in str(raised.value.__cause__)
    _answers_the_stored_decision(bank)


def test_an_unanswered_decision_keeps_the_moment_its_request_was_checked(
    bank: Bank, clock: FakeClock
) -> None:
    def broken(outcome: Outcome) -> bytes:
        raise RuntimeError("signing key unavailable")

    checked = freshness.now_ms() - 7  # the gateway's clock, which the bound reads
    with pytest.raises(AnswerNotStored):
        authorize(bank, respond=broken, checked_at_ms=checked)
    with pytest.raises(AnswerNotStored):
        authorize(bank, rrpid=b"r-2", digest=b"d-2", xid=b"x-2", respond=broken)
    clock.advance(1_000)
    first = bank.ledger.stored_response(b"r-1", b"d-1")
    assert isinstance(first, Unanswered)
    assert (first.checked_at_ms, first.decided_at_ms) == (checked, clock.now_ms - 1_000)
    # A caller that gave no moment: the decision's own time stands in.
    second = bank.ledger.stored_response(b"r-2", b"d-2")
    assert isinstance(second, Unanswered)
    assert second.checked_at_ms == second.decided_at_ms == clock.now_ms - 1_000


@pytest.mark.parametrize("moment", [True, 1.5, str(1_700_000_000_000)])
def test_a_moment_of_check_that_is_not_an_integer_changes_nothing(
    bank: Bank, moment: object
) -> None:
    with pytest.raises(InvalidRequest, match="checked_at_ms must be an integer"):
        authorize(bank, checked_at_ms=moment)
    assert bank.ledger.stored_response(b"r-1", b"d-1") is None
    assert bank.ledger.find_card_account(PAN_A).pending == 0
    assert bank.outcomes == []


@pytest.mark.parametrize("moment", [-1, 2**63], ids=["before-1970", "past-int64"])
def test_a_moment_of_check_out_of_range_changes_nothing_on_any_store(
    bank: Bank, moment: int
) -> None:
    # Past int64, SQLite could not bind it and PostgreSQL refused it with another error.
    with pytest.raises(InvalidRequest, match=r"^checked_at_ms must be between 0 and "):
        authorize(bank, checked_at_ms=moment)
    assert bank.ledger.stored_response(b"r-1", b"d-1") is None
    assert bank.ledger.find_card_account(PAN_A).pending == 0
    assert bank.outcomes == []


class _LosingAnswers(LedgerStore):
    """A real store whose answer-storing writes fail while ``losing`` is set (the decision's
    own write goes through): a database lost between a decision and its answer."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store
        self.losing = True

    def execute(self, work: Callable[[Transaction], R]) -> R:
        if self.losing and getattr(work, "func", None) is idempotency.store_answer:
            raise StoreUnavailable("the database went away")
        return self._store.execute(work)

    def read(self, query: Callable[[Transaction], R]) -> R:
        return self._store.read(query)

    def close(self) -> None:
        self._store.close()


def test_an_answer_that_fails_to_store_leaves_the_decision_for_a_retry(
    backend: Backend, keys: LedgerKeys, clock: FakeClock
) -> None:
    store = _LosingAnswers(backend.open_store())
    ledger = Ledger(store, keys, clock=clock)
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
        bank = Bank(ledger)
        with pytest.raises(AnswerNotStored, match="StoreUnavailable"):
            authorize(bank)
        store.losing = False
        bank.outcomes.clear()  # the answer built above was never stored
        _answers_the_stored_decision(bank)
        ledger.check_balanced()
    finally:
        ledger.close()


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


def test_a_slow_answer_holds_up_no_other_request(bank: Bank) -> None:
    # The answer is signed after its decision commits, outside any transaction: a token
    # stalling while it signs a decline holds neither the single writer (SQLite) nor the
    # card's row (PostgreSQL), so an approval on the same card goes through meanwhile.
    signing, release = threading.Event(), threading.Event()

    def stalled_token(outcome: Outcome) -> bytes:
        signing.set()
        release.wait(30)
        return b"signed late: " + str(outcome).encode()

    with ThreadPoolExecutor(max_workers=1) as pool:
        declined = pool.submit(
            authorize, bank, rrpid=b"r-slow", xid=b"x-slow", amount=10**9, respond=stalled_token
        )
        assert signing.wait(30)
        assert isinstance(bank.authorize(PAN_A, 100), Authorized)
        assert not declined.done()  # still signing, and nobody waited for it
        release.set()
        assert declined.result(30).startswith(b"signed late: Declined(")
    assert bank.ledger.find_card_account(PAN_A).pending == 100
    bank.ledger.check_balanced()


def test_a_prebuilt_approval_must_name_the_hold_it_answers(bank: Bank) -> None:
    with pytest.raises(InvalidRequest, match="another hold id"):
        authorize(
            bank, hold_id="hold-a", prebuilt=PrebuiltApproval("hold-b", 1000, EUR, b"approved")
        )
    assert bank.ledger.stored_response(b"r-1", b"d-1") is None
    assert bank.ledger.find_card_account(PAN_A).pending == 0


def test_a_prebuilt_approval_answers_only_its_own_outcome(bank: Bank) -> None:
    prebuilt = PrebuiltApproval("hold-a", 1000, EUR, b"approved ahead")

    def ask(*, amount: int, rrpid: bytes) -> bytes:
        return authorize(
            bank,
            rrpid=rrpid,
            digest=b"d-" + rrpid,
            xid=b"x-" + rrpid,
            amount=amount,
            hold_id="hold-a",
            prebuilt=PrebuiltApproval("hold-a", amount, EUR, prebuilt.response),
        )

    # Declined: the bytes built ahead are not its answer; ``respond`` builds one.
    assert ask(amount=10**9, rrpid=b"r-1") != prebuilt.response
    assert bank.outcomes == [Declined(Decline.INSUFFICIENT_FUNDS)]
    # Approved as expected: the bytes built ahead, and ``respond`` is not asked.
    assert ask(amount=1000, rrpid=b"r-2") == prebuilt.response
    assert len(bank.outcomes) == 1
