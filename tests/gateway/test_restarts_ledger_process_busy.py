"""The ledger process started again into a busy ledger is started again, not fatal.

With ``[ledger] service = true``, any start failure of the ledger process stopped the
bank: one killed while another program held SQLite's write lock (an operator's shell, a
VACUUM) met SQLITE_BUSY as it migrated, past the busy timeout, and the bank stopped,
though the lock was let go seconds later. A fault that passes (``StoreBusy``) now has it
started again, until the ledger has not been served for RESTART_WINDOW_SECONDS since the
last ledger process that served died (``gateway.restarts``); a lasting one (a damaged
ledger) still stops the bank at once, and so does any at the bank's first start.

Only the ledger busy, of the faults that pass: its every try waits out the busy timeout.
Any fault that passes had the ledger process started again at once, and one that fails
at once (the ledger process's StoreAway, a token away, a start killed as late) would be
a tight loop for a minute; none of them is the ledger process's to meet by itself.
"""

from __future__ import annotations

import logging

import pytest

from gateway.child import LEDGER_INDEX
from gateway.child_deadlines import late_fault
from gateway.restarts import MAX_RESTARTS, RESTART_WINDOW_SECONDS, ledger_busy

from .ledger_restart_support import BUSY, DAMAGED, LEDGER, TRY_SECONDS, Clock, died

AWAY = "?StoreAway: the ledger service connection failed: [Errno 111] Connection refused"
TOKEN_AWAY = "?TokenAbsent: no token 't2-bank' in PKCS#11 module"
# Named like the ledger's StoreBusy, but not it: the name must be whole.
BUSIER = "?StoreBusyish: not the ledger busy"


def test_a_busy_ledger_process_start_is_retried_until_a_minute_unserved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    clock.now = 100.0
    restarts = died(clock)
    caplog.set_level(logging.WARNING, "setpay.workers")
    tries = 0
    while clock.now + TRY_SECONDS < 100.0 + RESTART_WINDOW_SECONDS:
        clock.now += TRY_SECONDS
        assert restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, fault=BUSY) is None
        tries += 1
    assert tries > MAX_RESTARTS  # spends nothing of the restart budget
    assert restarts.known_fault(LEDGER_INDEX) == BUSY  # its child says it at DEBUG
    assert "the ledger process cannot start: it starts again now" in caplog.text
    assert restarts.due() == []  # workers wait for it still
    clock.now = 100.0 + RESTART_WINDOW_SECONDS
    refused = restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, fault=BUSY)
    assert refused == (
        "the ledger process failed to start with the ledger not served for 60 s (at most"
        " 60 s); the last cause: StoreBusy: SQLite is unavailable (SQLITE_BUSY)"
    )


def test_the_minute_is_counted_from_the_last_ledger_process_that_served() -> None:
    clock = Clock()
    restarts = died(clock)
    clock.now = RESTART_WINDOW_SECONDS - 1
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, fault=BUSY) is None
    restarts.ledger_serves = True  # its successor served ...
    assert restarts.known_fault(LEDGER_INDEX) is None  # ... its cause news again
    clock.now = 1000.0
    assert restarts.refusal(LEDGER, LEDGER_INDEX, 900.0, serving=True) is None  # ... and died
    restarts.ledger_serves = False
    clock.now = 1000.0 + RESTART_WINDOW_SECONDS - 1
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, fault=BUSY) is None
    clock.now = 1000.0 + RESTART_WINDOW_SECONDS
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, fault=BUSY)


@pytest.mark.parametrize(
    ("opened", "fault"),
    [
        (True, DAMAGED),
        (True, None),
        (False, BUSY),
        (True, AWAY),
        (True, TOKEN_AWAY),
        (True, late_fault()),
        (True, BUSIER),
    ],
    ids=[
        "a-damaged-ledger",
        "no-cause-reported",
        "first-start",
        "ledger-away",
        "token-away",
        "late",
        "another-name",
    ],
)
def test_other_ledger_process_start_failures_still_stop_the_bank(
    opened: bool, fault: str | None
) -> None:
    restarts = died(Clock())
    restarts.opened = opened
    refused = restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, fault=fault)
    assert refused == "the ledger process failed to start"


def test_the_ledger_busy_is_told_by_its_fault_line() -> None:
    assert ledger_busy(BUSY)
    assert not any(ledger_busy(f) for f in (DAMAGED, AWAY, TOKEN_AWAY, BUSIER, None))
    assert not ledger_busy("!StoreBusy: marked lasting")
