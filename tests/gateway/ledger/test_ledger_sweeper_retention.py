"""The hold sweeper's round prunes to the ledger's retention, and only when it has one
(every store; ``sqlite-service`` is the bank's ``[ledger] service = true``: the sweeper's
ledger reaches the store through ``RemoteLedgerStore``, the pruning shipped over the wire).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.ledger import Authorized, HoldSweeper, Ledger, LedgerConfig, LedgerKeys
from gateway.ledger.retention import DAY_MS, MIN_RETENTION_DAYS
from tests.gateway.ledger.ledger_support import MERCHANT, Backend, Bank, FakeClock

DAYS = MIN_RETENTION_DAYS
# Authorizations decided before the clock moves past the horizon.
DECIDED = 3


def _count(backend: Backend, table: str) -> int:
    ((n,),) = backend.raw_query(f"SELECT COUNT(*) FROM {table}")
    assert isinstance(n, int)
    return n


@pytest.fixture
def retaining(backend: Backend, keys: LedgerKeys, clock: FakeClock) -> Iterator[Ledger]:
    """A second ledger on the fixture's database, as a bank given ``retention_days`` opens
    it (``gateway.issuer.open_ledger``): the one its sweeper runs on."""
    ledger = Ledger(
        backend.open_store(), keys, clock=clock, config=LedgerConfig(retention_days=DAYS)
    )
    yield ledger
    ledger.close()


def test_a_round_releases_due_holds_then_prunes_what_the_retention_lets_go(
    bank: Bank, clock: FakeClock, backend: Backend, retaining: Ledger
) -> None:
    holds = []
    for _ in range(DECIDED):
        outcome = bank.authorize(amount=10)
        assert isinstance(outcome, Authorized), outcome
        holds.append(outcome.hold_id)
    clock.advance(DAYS * DAY_MS + 1)
    young = bank.authorize(amount=10)  # decided now: inside the horizon, and its hold live
    assert isinstance(young, Authorized), young
    assert _count(backend, "requests") == _count(backend, "pi_uses") == DECIDED + 1

    # Without a retention a round releases the due holds and prunes nothing.
    HoldSweeper(bank.ledger).run_round()
    assert [bank.ledger.hold(h).status for h in holds] == ["expired"] * DECIDED
    assert _count(backend, "requests") == DECIDED + 1

    HoldSweeper(retaining).run_round()
    assert _count(backend, "requests") == 1
    assert bank.ledger.hold(young.hold_id).status == "pending"
    # The test cards' XIDs stay: their expiry month is years ahead (``retention``).
    assert _count(backend, "pi_uses") == DECIDED + 1
    assert bank.ledger.merchant_account(MERCHANT).pending == 10
