"""A replacement meeting the SQLite ledger's write lock held past the busy timeout (another
program's long write: an operator's shell, a VACUUM) is started again, its other worker
serving meanwhile.

SQLITE_BUSY was plain StoreUnavailable, a fault that lasts: the replacement, migrating
under BEGIN IMMEDIATE as every store opening does, failed after the 5 s busy timeout
and the supervisor stopped the whole bank ("a worker failed to start"). It is the
ledger busy now (``StoreBusy``), a fault that passes (``gateway.child``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

from .served import serve_bank, wait_for, workers_of

BUSY = "StoreBusy: SQLite is unavailable (SQLITE_BUSY)"


def test_a_replacement_meeting_a_busy_ledger_is_started_again(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=2)
    try:
        other = sqlite3.connect(tmp_path / "bank" / "ledger.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # held until the replacement met it, then let go
            os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)
            # Not a fixed time past the busy timeout: a replacement slow to start (a loaded
            # machine) opened the ledger late, found it let go, and met nothing.
            wait_for("the replacement meeting the busy ledger, or the bank stopping",
                     lambda: BUSY in bank.log() or "stopping the bank" in bank.log())  # fmt: skip
        finally:
            other.rollback()
            other.close()
        wait_for("its replacement serving, or the bank stopping", lambda: "stopping the bank"
                 in bank.log() or bank.log().count(" serving (pid ") >= 3)  # fmt: skip
        log = bank.log()
        assert "stopping the bank" not in log, log[-5000:]
        assert BUSY in log, log[-5000:]
        assert len(workers_of(bank.process.pid)) == 2
        assert bank.stop() == 0, bank.log()[-5000:]
    finally:
        bank.close()
