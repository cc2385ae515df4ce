"""The hold sweeper's round prunes to the ledger's retention, and only when it has one
(every store; ``sqlite-service`` is the bank's ``[ledger] service = true``: the sweeper's
ledger reaches the store through ``RemoteLedgerStore``, the pruning shipped over the wire).
"""

from __future__ import annotations

from gateway.ledger import Authorized, HoldSweeper, Ledger
from gateway.ledger.retention import DAY_MS
from tests.gateway.ledger.ledger_support import MERCHANT, Backend, Bank, FakeClock
from tests.gateway.ledger.retention_support import DAYS, count_rows

# Authorizations decided before the clock moves past the horizon.
DECIDED = 3


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
    assert count_rows(backend, "requests") == count_rows(backend, "pi_uses") == DECIDED + 1

    # Without a retention a round releases the due holds and prunes nothing.
    HoldSweeper(bank.ledger).run_round()
    assert [bank.ledger.hold(h).status for h in holds] == ["expired"] * DECIDED
    assert count_rows(backend, "requests") == DECIDED + 1

    HoldSweeper(retaining).run_round()
    assert count_rows(backend, "requests") == 1
    assert bank.ledger.hold(young.hold_id).status == "pending"
    # The test cards' XIDs stay: their expiry month is years ahead (``retention``).
    assert count_rows(backend, "pi_uses") == DECIDED + 1
    assert bank.ledger.merchant_account(MERCHANT).pending == 10
