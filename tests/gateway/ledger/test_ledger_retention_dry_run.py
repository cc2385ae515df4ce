"""``setpay bank prune-ledger --dry-run`` counts what a prune then deletes (every store):
the count and the batches read the same rule (``retention._FATE_OF``), here on a ledger
with every kind of row, before and after the scan passed a decision then unanswered."""

from __future__ import annotations

import pytest

from gateway.ledger import AnswerNotStored, Authorized, CaptureItem, CreditItem, Ledger
from gateway.ledger.outcomes import PostingOutcome
from gateway.ledger.pruning import prune
from gateway.ledger.retention import DAY_MS, UNANSWERED_REVISIT_MS, Prunable
from tests.gateway.ledger.ledger_support import EUR, MERCHANT, PAN_C, Backend, Bank, FakeClock
from tests.gateway.ledger.retention_support import (
    DAYS,
    SHORT_DEAD_AFTER_MS,
    SHORT_EXPIRY,
    count_rows,
    decline,
)


def _counted_then_pruned(ledger: Ledger, backend: Backend) -> Prunable:
    """The dry run's count, after checking that a prune then deletes just as many rows."""
    counted = ledger.prunable(DAYS)
    before = count_rows(backend, "requests"), count_rows(backend, "pi_uses")
    totals = prune(ledger, DAYS, batch=2, pause_seconds=0)  # several batches, a revisit
    after = count_rows(backend, "requests"), count_rows(backend, "pi_uses")
    deleted = Prunable(requests=before[0] - after[0], pi_uses=before[1] - after[1])
    assert counted == deleted == Prunable(requests=totals.requests, pi_uses=totals.pi_uses)
    return counted


def test_the_dry_run_counts_what_a_prune_deletes(
    bank: Bank, clock: FakeClock, backend: Backend
) -> None:
    ledger = bank.ledger
    ledger.open_card_account(PAN_C, SHORT_EXPIRY, 10_000, EUR)
    # Old and answered: an authorization of a short-lived card, one of a live card, and
    # the capture of the latter (3 requests; the first's XID may go, the second's not).
    short = bank.authorize(pan=PAN_C, pan_expiry=SHORT_EXPIRY, amount=100)
    hold = bank.authorize(amount=1000)
    assert isinstance(short, Authorized) and isinstance(hold, Authorized)
    captured = bank.call(
        ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold.hold_id, 1000, EUR)]
    )
    assert isinstance(captured, PostingOutcome)
    # Old and kept for good: a refund, answered.
    bank.call(ledger.credit, merchant_id=MERCHANT, items=[CreditItem(hold.hold_id, 300, EUR)])
    # Old and awaiting an answer: one never answered, one answered after the scan passed.
    for rrpid in (b"never", b"late"):
        with pytest.raises(AnswerNotStored):
            decline(bank, rrpid, answered=False)
    clock.now_ms = SHORT_DEAD_AFTER_MS + DAYS * DAY_MS + 1
    # Young: decided now, inside the horizon.
    assert isinstance(bank.authorize(amount=10), Authorized)

    assert _counted_then_pruned(ledger, backend) == Prunable(requests=3, pi_uses=1)

    decline(bank, b"late", answered=True)  # the merchant's retry, long after
    clock.advance(UNANSWERED_REVISIT_MS)  # the scan looks at it again
    assert _counted_then_pruned(ledger, backend) == Prunable(requests=1, pi_uses=0)
    # What is left: the refund, the decision never answered, the young authorization.
    assert count_rows(backend, "requests") == 3
    assert _counted_then_pruned(ledger, backend) == Prunable(requests=0, pi_uses=0)
