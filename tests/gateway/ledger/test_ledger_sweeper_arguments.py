"""A hold sweeper is refused, when it is made, a batch the ledger would refuse at every
round: its thread only logs a round's failure, so it would never release a hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import Authorized, Ledger, LedgerKeys, SqliteLedgerStore
from gateway.ledger.limits import EXPIRE_BATCH
from gateway.ledger.retention import MAX_RETENTION_BATCH
from gateway.ledger.sweeper import HoldSweeper
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, MERCHANT, PAN_A, Bank, FakeClock


@pytest.fixture
def one_store_ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A ledger on SQLite: making a sweeper reads nothing, one store is enough."""
    opened = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), LedgerKeys.generate())
    yield opened
    opened.close()


@pytest.mark.parametrize("batch", [0, -1, EXPIRE_BATCH + 1, True, 2.0, "10"])
def test_a_batch_the_ledger_refuses_is_refused_at_once(
    one_store_ledger: Ledger, batch: object
) -> None:
    with pytest.raises(ValueError, match=f"batch must be 1 to {EXPIRE_BATCH} holds"):
        HoldSweeper(one_store_ledger, batch=batch)  # type: ignore[arg-type]


@pytest.mark.parametrize("prune_batch", [0, MAX_RETENTION_BATCH + 1, False, 50.0])
def test_a_pruning_batch_the_ledger_refuses_is_refused_at_once(
    one_store_ledger: Ledger, prune_batch: object
) -> None:
    with pytest.raises(ValueError, match=f"prune_batch must be 1 to {MAX_RETENTION_BATCH} rows"):
        HoldSweeper(one_store_ledger, prune_batch=prune_batch)  # type: ignore[arg-type]


def test_the_largest_batches_are_taken_and_release_due_holds(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), LedgerKeys.generate(), clock=clock)
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
        held = Bank(ledger).authorize(PAN_A, 100, expires_at_ms=clock.now_ms + 1_000)
        assert isinstance(held, Authorized), held
        clock.advance(1_000)
        sweeper = HoldSweeper(
            ledger, batch=EXPIRE_BATCH, prune_batch=MAX_RETENTION_BATCH, pause_seconds=0
        )
        assert sweeper.sweep() == 1
        assert ledger.merchant_account(MERCHANT).pending == 0
        ledger.check_balanced()
    finally:
        ledger.close()
