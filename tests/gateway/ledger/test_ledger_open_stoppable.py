"""Opening the SQLite ledger while another program holds its write lock gives up at once
once the process is asked to stop (``SqliteLedgerStore``'s ``stopped``), rather than
after the busy timeout.

The ledger process, started again into a busy ledger, met its stop inside SQLite's one
busy wait of BUSY_TIMEOUT_MS: it could not see the stop until the wait was over, and a
signal that cut one of SQLite's sleeps short made the wait end a moment early and
``_retrying_busy`` wait once more, 10 s in all. Waited in tries of STOPPABLE_TRY_MS, the
stop is seen within one. Without a stop the opening waits the whole timeout, as before."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import SqliteLedgerStore, StoreBusy
from gateway.ledger.sqlite import BUSY_TIMEOUT_MS, STOPPABLE_TRY_MS, SqliteStoreConfig

# Well under the busy timeout, well over one try: room for a loaded machine.
PROMPT_SECONDS = BUSY_TIMEOUT_MS / 1000 / 4
# When the test asks the opening to stop.
STOP_AFTER_SECONDS = 0.3
# A short busy timeout for the opening that is never stopped, still several tries long.
SHORT_TIMEOUT_MS = 6 * STOPPABLE_TRY_MS


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Path]:
    """A ledger whose write lock another program holds (an operator's shell)."""
    path = tmp_path / "ledger.db"
    SqliteLedgerStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield path
    finally:
        other.rollback()
        other.close()


def test_an_opening_waiting_out_a_held_lock_gives_up_at_a_stop(held: Path) -> None:
    asked = threading.Event()
    timer = threading.Timer(STOP_AFTER_SECONDS, asked.set)
    began = time.monotonic()
    timer.start()
    try:
        with pytest.raises(StoreBusy, match="SQLITE_BUSY"):
            SqliteLedgerStore(held, stopped=asked.is_set)
    finally:
        timer.cancel()
    took = time.monotonic() - began
    assert STOP_AFTER_SECONDS <= took < STOP_AFTER_SECONDS + PROMPT_SECONDS, took


def test_an_opening_never_stopped_waits_the_whole_busy_timeout(held: Path) -> None:
    config = SqliteStoreConfig(busy_timeout_ms=SHORT_TIMEOUT_MS)
    began = time.monotonic()
    with pytest.raises(StoreBusy, match="SQLITE_BUSY"):
        SqliteLedgerStore(held, config, stopped=lambda: False)
    assert time.monotonic() - began >= SHORT_TIMEOUT_MS / 1000


def test_a_stop_asked_for_ends_no_opening_that_is_not_waiting(tmp_path: Path) -> None:
    """The stop is asked only as the opening waits: a free ledger opens, and the ledger
    process then sees the stop in its serving loop."""
    store = SqliteLedgerStore(tmp_path / "ledger.db", stopped=lambda: True)
    store.close()
