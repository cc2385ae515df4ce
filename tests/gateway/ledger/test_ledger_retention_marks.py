"""Retention's marks: a decision the scan passed while it awaited its answer goes once it is
answered, a refund stays, and one never answered costs a look a day (every store)."""

from __future__ import annotations

import pytest

from gateway.ledger import AnswerNotStored, Authorized, CaptureItem, CreditItem
from gateway.ledger.pruning import prune
from gateway.ledger.retention import DAY_MS, UNANSWERED_REVISIT_MS
from tests.gateway.ledger.ledger_support import EUR, MERCHANT, Backend, Bank, FakeClock
from tests.gateway.ledger.retention_support import DAYS, count_rows, decline, unsigned


def test_a_decision_answered_after_the_scan_passed_it_goes_a_day_later(
    bank: Bank, clock: FakeClock, backend: Backend
) -> None:
    with pytest.raises(AnswerNotStored):
        decline(bank, b"late", answered=False)
    clock.advance(DAYS * DAY_MS + 1)
    assert prune(bank.ledger, DAYS, pause_seconds=0).requests == 0  # awaiting its answer
    decline(bank, b"late", answered=True)  # the merchant's retry, long after
    assert bank.ledger.stored_response(b"late", b"digest") is not None
    # Looked at again once a day, not every round: until then an idle round writes nothing.
    assert bank.ledger.has_prunable(DAYS) == (False, False)
    clock.advance(UNANSWERED_REVISIT_MS)
    assert bank.ledger.prunable(DAYS).requests == 1
    assert prune(bank.ledger, DAYS, pause_seconds=0).requests == 1
    assert bank.ledger.stored_response(b"late", b"digest") is None
    assert count_rows(backend, "requests") == 0
    assert count_rows(backend, "retention_marks") == 1  # the scan's own, nothing left to look at


def test_a_decision_never_answered_stays_and_is_looked_at_once_a_day(
    bank: Bank, clock: FakeClock, backend: Backend
) -> None:
    with pytest.raises(AnswerNotStored):
        decline(bank, b"never", answered=False)
    clock.advance(DAYS * DAY_MS + 1)
    prune(bank.ledger, DAYS, pause_seconds=0)
    for _ in range(2):
        assert bank.ledger.prune_requests(DAYS).examined == 0  # not due again yet
        clock.advance(UNANSWERED_REVISIT_MS)
        looked = bank.ledger.prune_requests(DAYS)
        assert (looked.examined, looked.deleted) == (1, 0)
    assert count_rows(backend, "requests") == 1
    assert bank.ledger.has_prunable(DAYS) == (False, False)


def test_a_refund_answered_after_the_scan_passed_it_stays(
    bank: Bank, clock: FakeClock, backend: Backend
) -> None:
    hold = bank.authorize(amount=1000)
    assert isinstance(hold, Authorized), hold
    items = [CaptureItem(hold.hold_id, 1000, EUR)]
    bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=items)

    def refund(respond: object) -> None:
        bank.ledger.credit(
            merchant_id=MERCHANT,
            items=[CreditItem(hold.hold_id, 300, EUR)],
            rrpid=b"refund",
            request_digest=b"digest",
            respond=respond,
        )

    with pytest.raises(AnswerNotStored):
        refund(unsigned)
    clock.advance(DAYS * DAY_MS + 1)
    assert prune(bank.ledger, DAYS, pause_seconds=0).requests == 2  # authorization, capture
    refund(bank.respond)
    clock.advance(UNANSWERED_REVISIT_MS)
    assert bank.ledger.prunable(DAYS).requests == 0
    assert prune(bank.ledger, DAYS, pause_seconds=0).requests == 0
    assert bank.ledger.stored_response(b"refund", b"digest") is not None
    assert bank.ledger.hold(hold.hold_id).credited == 300
    assert count_rows(backend, "retention_marks") == 1  # a refund stays for good: not looked at
