"""``setpay bank prune-ledger --dry-run`` counts what a prune then deletes (every store):
the count and the batches read the same rule (``retention._FATE_OF``), here on a ledger
with every kind of row, before and after the scan passed a decision then unanswered."""

from __future__ import annotations

import pytest

from gateway.ledger import AnswerNotStored, Authorized, CaptureItem, CreditItem, Ledger
from gateway.ledger.outcomes import Decline, Outcome, PostingOutcome
from gateway.ledger.pruning import prune
from gateway.ledger.retention import DAY_MS, MIN_RETENTION_DAYS, UNANSWERED_REVISIT_MS, Prunable
from tests.gateway.ledger.ledger_support import EUR, MERCHANT, PAN_C, Backend, Bank, FakeClock

DAYS = MIN_RETENTION_DAYS
# A card whose expiry month is over before the horizon, so its XIDs may go as well: the
# first moment of the month after it (2025-12-01, UTC; the tests' clock starts before).
SHORT_EXPIRY = "202511"
SHORT_DEAD_AFTER_MS = 1_764_547_200_000


def _unsigned(outcome: Outcome) -> bytes:
    raise RuntimeError("the signing key went away")


def _count(backend: Backend, table: str) -> int:
    ((n,),) = backend.raw_query(f"SELECT COUNT(*) FROM {table}")
    assert isinstance(n, int)
    return n


def _decline(bank: Bank, rrpid: bytes, *, answered: bool) -> None:
    """A decline under ``rrpid``; unanswered (its signature fails) unless ``answered``, as
    a retry of the same request answers it."""
    respond = bank.respond if answered else _unsigned
    bank.ledger.decline(
        Decline.AMOUNT_MISMATCH, rrpid=rrpid, request_digest=b"digest", respond=respond
    )


def _counted_then_pruned(ledger: Ledger, backend: Backend) -> Prunable:
    """The dry run's count, after checking that a prune then deletes just as many rows."""
    counted = ledger.prunable(DAYS)
    before = _count(backend, "requests"), _count(backend, "pi_uses")
    totals = prune(ledger, DAYS, batch=2, pause_seconds=0)  # several batches, a revisit
    after = _count(backend, "requests"), _count(backend, "pi_uses")
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
            _decline(bank, rrpid, answered=False)
    clock.now_ms = SHORT_DEAD_AFTER_MS + DAYS * DAY_MS + 1
    # Young: decided now, inside the horizon.
    assert isinstance(bank.authorize(amount=10), Authorized)

    assert _counted_then_pruned(ledger, backend) == Prunable(requests=3, pi_uses=1)

    _decline(bank, b"late", answered=True)  # the merchant's retry, long after
    clock.advance(UNANSWERED_REVISIT_MS)  # the scan looks at it again
    assert _counted_then_pruned(ledger, backend) == Prunable(requests=1, pi_uses=0)
    # What is left: the refund, the decision never answered, the young authorization.
    assert _count(backend, "requests") == 3
    assert _counted_then_pruned(ledger, backend) == Prunable(requests=0, pi_uses=0)
