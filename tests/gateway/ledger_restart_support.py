"""What the tests of the ledger process started again into a busy ledger share: a clock
the test moves, and a ``Restarts`` whose ledger process served and died, or whose
successor then failed of the ledger busy."""

from __future__ import annotations

from gateway.child import LEDGER_INDEX
from gateway.restarts import Restarts

LEDGER = "the ledger process"
BUSY = "?StoreBusy: SQLite is unavailable (SQLITE_BUSY)"
DAMAGED = "!StoreUnavailable: SQLite is unavailable (SQLITE_NOTADB)"
# Each try of a busy ledger waits out the store's busy timeout before it fails.
TRY_SECONDS = 5.0


class Clock:
    """The time ``Restarts`` reads: ``now``, moved by the test, not by waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def died(clock: Clock) -> Restarts:
    """A bank that served, whose ledger process served and died at the clock's now."""
    restarts = Restarts(clock)
    restarts.opened = True
    assert restarts.refusal(LEDGER, LEDGER_INDEX, ready_at=0.0, serving=True) is None
    restarts.ledger_serves = False  # the supervisor forks its successor
    return restarts


def in_a_busy_outage(clock: Clock) -> Restarts:
    """A bank that served, whose ledger process served and died at 0, and whose successor
    failed of the ledger busy at TRY_SECONDS."""
    restarts = died(clock)
    assert restarts.ledger_due()  # at once
    clock.now = TRY_SECONDS
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, fault=BUSY) is None
    assert restarts.ledger_due()  # at once: its try waited the busy timeout out
    return restarts
