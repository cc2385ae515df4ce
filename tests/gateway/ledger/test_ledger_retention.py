"""Retention: ``requests`` and ``pi_uses`` rows past the horizon go in bounded batches, the
ones that still guard something stay, and a request built afresh after its original's
answer went changes nothing (every store)."""

from __future__ import annotations

import pytest

from gateway.ledger import (
    Authorized,
    CaptureItem,
    CommitStats,
    CreditItem,
    Declined,
    InvalidRequest,
    Ledger,
    PiPreviouslyUsed,
    Posted,
)
from gateway.ledger.outcomes import Decline, PostingOutcome
from gateway.ledger.pruning import prune
from gateway.ledger.retention import DAY_MS, Pruned
from tests.gateway.ledger.ledger_support import (
    EUR,
    MERCHANT,
    PAN_A,
    PAN_C,
    Backend,
    Bank,
    FakeClock,
)
from tests.gateway.ledger.retention_support import (
    DAYS,
    SHORT_DEAD_AFTER_MS,
    SHORT_EXPIRY,
    count_rows,
)


def _state(backend: Backend) -> list[object]:
    """Balances, holds and transfers as they stand, to show a request changed nothing."""
    return [
        backend.raw_query(f"SELECT * FROM {table} ORDER BY 1")
        for table in ("accounts", "holds", "transfers", "batches")
    ]


def _approved(bank: Bank, **kwargs: object) -> Authorized:
    outcome = bank.authorize(**kwargs)  # type: ignore[arg-type]
    assert isinstance(outcome, Authorized), outcome
    return outcome


def test_rows_older_than_the_horizon_go_and_younger_ones_stay(
    bank: Bank, clock: FakeClock, backend: Backend
) -> None:
    old = [bank.fresh("rrpid") for _ in range(3)]
    digests = {rrpid: bank.fresh("digest") for rrpid in old}
    for rrpid in old:
        _approved(bank, amount=10, rrpid=rrpid, digest=digests[rrpid])
    clock.advance(10 * DAY_MS)
    young = bank.fresh("rrpid")
    _approved(bank, amount=10, rrpid=young, digest=b"young")
    clock.advance((DAYS - 10) * DAY_MS + 1)  # the first three are past the horizon by 1 ms

    assert bank.ledger.prunable(DAYS).requests == 3
    assert prune(bank.ledger, DAYS, pause_seconds=0).requests == 3
    for rrpid in old:
        assert bank.ledger.stored_response(rrpid, digests[rrpid]) is None
    assert bank.ledger.stored_response(young, b"young") is not None
    assert count_rows(backend, "requests") == 1
    # Holds, transfers and accounts are the books: all four authorizations' stay.
    assert count_rows(backend, "holds") == 4
    assert bank.ledger.prunable(DAYS).requests == 0
    assert prune(bank.ledger, DAYS).requests == 0  # nothing left: an idle round


def test_batches_are_bounded_and_each_is_one_transaction(
    bank: Bank, clock: FakeClock, backend: Backend, commits: list[CommitStats]
) -> None:
    for _ in range(7):
        _approved(bank, amount=10)
    clock.advance(DAYS * DAY_MS + 1)
    left: list[int] = []
    batches: list[tuple[str, int, int]] = []

    def seen(table: str, done: Pruned) -> None:
        batches.append((table, done.examined, done.deleted))
        left.append(count_rows(backend, "requests"))

    commits.clear()
    totals = prune(bank.ledger, DAYS, batch=3, pause_seconds=0, observer=seen)
    assert totals.requests == 7
    assert batches == [("requests", 3, 3), ("requests", 3, 3), ("requests", 1, 1)]
    assert left == [4, 1, 0]  # the row count after each batch: never more than 3 at once
    if backend.name != "sqlite-service":  # the service reports its commits after answering
        assert len(commits) == 3


def test_a_posted_refund_and_an_unanswered_decision_are_kept(
    bank: Bank, clock: FakeClock, backend: Backend
) -> None:
    hold = _approved(bank, amount=1000).hold_id
    captured = bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1000, EUR)]
    )
    assert isinstance(captured, PostingOutcome) and isinstance(captured.items[0], Posted)
    refund_rrpid, refund_digest = bank.fresh("rrpid"), bank.fresh("digest")
    refunded = bank.call(
        bank.ledger.credit,
        merchant_id=MERCHANT,
        items=[CreditItem(hold, 300, EUR)],
        rrpid=refund_rrpid,
        request_digest=refund_digest,
    )
    assert isinstance(refunded, PostingOutcome) and isinstance(refunded.items[0], Posted)

    def unsigned(outcome: object) -> bytes:
        raise RuntimeError("the signing key went away")

    with pytest.raises(Exception, match="not stored"):
        bank.ledger.decline(
            Decline.AMOUNT_MISMATCH, rrpid=b"unanswered", request_digest=b"d", respond=unsigned
        )
    clock.advance(DAYS * DAY_MS + 1)
    assert prune(bank.ledger, DAYS, pause_seconds=0).requests == 2  # authorization, capture
    # A retry of the refund's bytes is answered as it was: never built afresh, so never
    # posted twice (the test below shows what a refund built afresh would do).
    assert bank.ledger.stored_response(refund_rrpid, refund_digest) is not None
    assert bank.ledger.stored_response(b"unanswered", b"d") is not None
    assert count_rows(backend, "requests") == 2


def test_a_refund_built_afresh_would_be_posted_again_which_is_why_it_is_kept(
    bank: Bank,
) -> None:
    hold = _approved(bank, amount=1000).hold_id
    bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1000, EUR)])
    for _ in range(2):  # the same refund under two RRPIDs: nothing in the ledger ties them
        refunded = bank.call(
            bank.ledger.credit, merchant_id=MERCHANT, items=[CreditItem(hold, 300, EUR)]
        )
        assert isinstance(refunded, PostingOutcome) and isinstance(refunded.items[0], Posted)
    assert bank.ledger.hold(hold).credited == 600


def test_requests_built_afresh_after_their_answers_went_change_nothing(
    bank: Bank, clock: FakeClock, backend: Backend
) -> None:
    xid = bank.fresh("xid")
    hold = _approved(bank, amount=1000, xid=xid).hold_id
    bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 400, EUR)])
    clock.advance(DAYS * DAY_MS + 1)
    bank.ledger.expire_holds()  # what the sweeper did long ago
    assert prune(bank.ledger, DAYS, pause_seconds=0).requests == 2
    before = _state(backend)
    # The authorization built afresh: the same PI, so the same XID.
    with pytest.raises(PiPreviouslyUsed):
        bank.authorize(amount=1000, xid=xid)
    # The capture built afresh: its hold has expired.
    again = bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 400, EUR)]
    )
    assert isinstance(again, PostingOutcome)
    assert again.items == (Declined(Decline.HOLD_EXPIRED),)
    assert _state(backend) == before


def test_an_xid_goes_once_its_card_expiry_is_past_the_horizon_and_a_replay_is_declined(
    bank: Bank, clock: FakeClock, backend: Backend
) -> None:
    bank.ledger.open_card_account(PAN_C, SHORT_EXPIRY, 10_000, EUR)
    dead = bank.fresh("xid")
    _approved(bank, pan=PAN_C, pan_expiry=SHORT_EXPIRY, amount=100, xid=dead)
    live = bank.fresh("xid")
    _approved(bank, pan=PAN_A, amount=100, xid=live)
    clock.now_ms = SHORT_DEAD_AFTER_MS + DAYS * DAY_MS  # not yet past the horizon
    assert prune(bank.ledger, DAYS).pi_uses == 0
    clock.advance(1)
    bank.ledger.expire_holds()
    assert bank.ledger.prunable(DAYS).pi_uses == 1
    assert prune(bank.ledger, DAYS).pi_uses == 1
    assert backend.raw_query("SELECT COUNT(*) FROM pi_uses") == [(1,)]
    before = _state(backend)
    replay = bank.authorize(pan=PAN_C, pan_expiry=SHORT_EXPIRY, amount=100, xid=dead)
    assert replay == Declined(Decline.EXPIRED_CARD)
    # The XID of a card still valid stays, however old: its replay is refused.
    with pytest.raises(PiPreviouslyUsed):
        bank.authorize(pan=PAN_A, amount=100, xid=live)
    after = _state(backend)
    assert after == before


@pytest.mark.parametrize("days", [0, DAYS - 1, 36_501, True, "400"])
def test_a_retention_out_of_bounds_is_refused(ledger: Ledger, days: object) -> None:
    with pytest.raises(InvalidRequest, match="retention_days must be"):
        ledger.prune_requests(days)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="retention_days must be"):
        ledger.prunable(days)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, 1001, True])
def test_a_batch_out_of_bounds_is_refused(ledger: Ledger, limit: object) -> None:
    with pytest.raises(InvalidRequest, match="limit must be 1 to 1000 rows"):
        ledger.prune_pi_uses(DAYS, limit)  # type: ignore[arg-type]
