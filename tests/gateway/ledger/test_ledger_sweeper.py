"""The hold sweeper: releases due holds in bounded batches, leaves the others, writes
nothing when idle, and is safe beside authorizations and other sweepers (every store)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from gateway.ledger import Authorized, CommitStats, HoldSweeper, Ledger, LedgerKeys
from tests.gateway.ledger.ledger_support import (
    MERCHANT,
    PAN_A,
    PAN_B,
    Backend,
    Bank,
    FakeClock,
)

# A hold's lifetime in these tests.
LIFETIME_MS = 60_000
# How long a test waits for a sweeper thread to have done its work.
WAIT_SECONDS = 10.0
# How long a commit report may trail the answer it came with (ledger service).
OBSERVER_LAG_SECONDS = 2.0
# The concurrency test: threads authorizing at once, and authorizations each.
AUTHORIZING_THREADS = 4
AUTHORIZATIONS = 25


def _hold(bank: Bank, pan: str, amount: int, expires_at_ms: int) -> str:
    outcome = bank.authorize(pan, amount, expires_at_ms=expires_at_ms)
    assert isinstance(outcome, Authorized), outcome
    return outcome.hold_id


def _settle(commits: list[CommitStats], expected: int) -> None:
    """Assert ``expected`` commits were reported. The ledger service reports a commit on
    its writer thread after it has answered, so the count may lag the answers a little."""
    deadline = time.monotonic() + OBSERVER_LAG_SECONDS
    while len(commits) < expected and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.02)  # and none more comes
    assert len(commits) == expected, commits


def test_the_sweep_releases_due_holds_in_bounded_batches_and_no_other(
    bank: Bank, clock: FakeClock, commits: list[CommitStats]
) -> None:
    start = clock.now_ms
    due = [_hold(bank, pan, 100, start + LIFETIME_MS) for pan in (PAN_A, PAN_B) * 2]
    due.append(_hold(bank, PAN_A, 100, start + LIFETIME_MS // 2))
    live = [_hold(bank, pan, 300, start + LIFETIME_MS + 1) for pan in (PAN_A, PAN_B)]
    batches: list[int] = []
    sweeper = HoldSweeper(bank.ledger, batch=2, pause_seconds=0, observer=batches.append)
    assert sweeper.sweep() == 0  # nothing due yet
    clock.now_ms = start + LIFETIME_MS
    commits.clear()
    assert sweeper.sweep() == 5
    assert batches == [2, 2, 1]
    _settle(commits, 3)  # a transaction per batch
    assert [bank.ledger.hold(h).status for h in due] == ["expired"] * 5
    assert [bank.ledger.hold(h).status for h in live] == ["pending"] * 2
    assert bank.ledger.merchant_account(MERCHANT).pending == 600
    # Idle: one read, no write.
    commits.clear()
    assert sweeper.sweep() == 0
    _settle(commits, 0)
    assert batches == [2, 2, 1]


def test_the_sweeper_thread_sweeps_until_the_ledger_closes(bank: Bank, clock: FakeClock) -> None:
    _hold(bank, PAN_A, 100, clock.now_ms + LIFETIME_MS)
    clock.advance(LIFETIME_MS)
    sweeper = bank.ledger.start_hold_sweeper(interval_seconds=0.05)
    deadline = time.monotonic() + WAIT_SECONDS
    while bank.ledger.merchant_account(MERCHANT).pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bank.ledger.merchant_account(MERCHANT).pending == 0  # at its start
    later = _hold(bank, PAN_B, 100, clock.now_ms + LIFETIME_MS)
    clock.advance(LIFETIME_MS)
    while bank.ledger.merchant_account(MERCHANT).pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bank.ledger.hold(later).pending == 0  # and again an interval later
    sweeper.stop()
    assert sweeper._thread is not None and not sweeper._thread.is_alive()


def test_sweepers_beside_authorizations_release_each_hold_once(
    bank: Bank, clock: FakeClock, backend: Backend, keys: LedgerKeys
) -> None:
    # A second ledger on the same database, as another host would have, sweeping too.
    other = Ledger(backend.open_store(), keys, clock=clock)
    sweepers = [
        HoldSweeper(ledger, interval_seconds=0.005, batch=3, pause_seconds=0).start()
        for ledger in (bank.ledger, other)
    ]

    def authorize(pan: str) -> int:
        driver = Bank(bank.ledger)
        for _ in range(AUTHORIZATIONS):
            _hold(driver, pan, 10, clock.now_ms + 50)
            clock.advance(3)  # holds fall due while others are placed and swept
        return AUTHORIZATIONS

    try:
        with ThreadPoolExecutor(AUTHORIZING_THREADS) as pool:
            placed = sum(pool.map(authorize, [PAN_A, PAN_B] * (AUTHORIZING_THREADS // 2)))
    finally:
        for sweeper in sweepers:
            sweeper.stop()
    assert placed == AUTHORIZING_THREADS * AUTHORIZATIONS
    clock.advance(LIFETIME_MS)
    HoldSweeper(other).sweep()
    other.close()
    # Every hold released once: nothing pending anywhere, and the books (checked again by
    # the fixture, hold by hold against the journal) balance.
    (eur,) = bank.ledger.totals()
    assert eur.debits_pending == eur.credits_pending == 0
    assert bank.ledger.merchant_account(MERCHANT).pending == 0
    bank.ledger.check_balanced()
