"""A pruning backlog never stops the hold sweeper: a round prunes at most its budget of
batches a table, after releasing the due holds, and the rounds that follow work the rest
off (every store)."""

from __future__ import annotations

import time

from gateway.ledger import Authorized, HoldSweeper, Ledger
from gateway.ledger.retention import DAY_MS
from tests.gateway.ledger.ledger_support import EUR, PAN_C, Backend, Bank, FakeClock
from tests.gateway.ledger.retention_support import (
    DAYS,
    SHORT_DEAD_AFTER_MS,
    SHORT_EXPIRY,
    count_rows,
)

# Rows a table may lose in one round: 2 batches of 2.
BATCH, BATCHES = 2, 2
# Authorizations decided, each a row in both tables: more than one round may prune, and
# not a whole number of batches, so the last batch finds the end.
DECIDED = 2 * BATCH * BATCHES - 1
# How long the sweeper's thread may take to work off the backlog: a few rounds of
# milliseconds each, with the slack of a loaded test machine; its interval is far longer.
WORKED_OFF_SECONDS = 20.0


def _backlog(bank: Bank, clock: FakeClock, backend: Backend) -> list[str]:
    """``DECIDED`` authorizations on a card of short expiry (its XIDs may go too: both
    tables have a backlog), then the clock past the horizon of every row: all their holds
    due, all their rows prunable."""
    bank.ledger.open_card_account(PAN_C, SHORT_EXPIRY, 10_000, EUR)
    holds = []
    for _ in range(DECIDED):
        outcome = bank.authorize(pan=PAN_C, pan_expiry=SHORT_EXPIRY, amount=10)
        assert isinstance(outcome, Authorized), outcome
        holds.append(outcome.hold_id)
    clock.now_ms = SHORT_DEAD_AFTER_MS + DAYS * DAY_MS + 1
    assert count_rows(backend, "requests") == count_rows(backend, "pi_uses") == DECIDED
    return holds


def test_a_round_releases_due_holds_and_prunes_at_most_its_budget(
    bank: Bank, clock: FakeClock, backend: Backend, retaining: Ledger
) -> None:
    holds = _backlog(bank, clock, backend)
    sweeper = HoldSweeper(retaining, pause_seconds=0, prune_batch=BATCH, prune_batches=BATCHES)

    more = sweeper.run_round()
    assert [bank.ledger.hold(h).status for h in holds] == ["expired"] * DECIDED
    left = DECIDED - BATCH * BATCHES
    assert count_rows(backend, "requests") == left
    assert count_rows(backend, "pi_uses") == left
    assert more is True  # rows left for the next round

    more = sweeper.run_round()
    assert count_rows(backend, "requests") == count_rows(backend, "pi_uses") == 0
    assert more is False  # the last batch found the end
    assert sweeper.run_round() is False  # an idle round
    assert retaining.prunable(DAYS).requests == retaining.prunable(DAYS).pi_uses == 0


def test_the_thread_carries_a_backlog_on_at_once_not_after_the_interval(
    bank: Bank, clock: FakeClock, backend: Backend, retaining: Ledger
) -> None:
    _backlog(bank, clock, backend)
    sweeper = HoldSweeper(
        retaining,
        interval_seconds=3600.0,  # a round after the first only if the backlog asks
        pause_seconds=0,
        prune_batch=BATCH,
        prune_batches=BATCHES,
    ).start()
    try:
        deadline = time.monotonic() + WORKED_OFF_SECONDS
        while count_rows(backend, "requests") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count_rows(backend, "requests") == 0
        while count_rows(backend, "pi_uses") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count_rows(backend, "pi_uses") == 0
    finally:
        sweeper.stop()
