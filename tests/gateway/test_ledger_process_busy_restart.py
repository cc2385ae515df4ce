"""The ledger process, killed while another program holds the SQLite ledger's write lock
(an operator's shell, a VACUUM), is started again until it serves; one meeting a damaged
ledger still stops the bank.

Any start failure of the ledger process stopped the bank: its successor, migrating under
BEGIN IMMEDIATE as every store opening does, met SQLITE_BUSY past the busy timeout, and
the supervisor said "the ledger process failed to start", though the lock was let go
seconds later. The ledger busy (``StoreBusy``) is a fault that passes, for the ledger
process too, until the ledger has not been served for a minute (``gateway.restarts``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

from .actors import register_merchant
from .served import LEDGER_PROCESS, ledger_process_of, serve_bank, wait_for, workers_of


def test_a_ledger_process_meeting_a_busy_ledger_is_started_again(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=2, extra_env=dict(LEDGER_PROCESS))
    try:
        other = sqlite3.connect(tmp_path / "bank" / "ledger.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # held until its successor met it, then let go
            (ledger,) = ledger_process_of(bank.process.pid)
            os.kill(ledger, signal.SIGKILL)
            wait_for(
                "the ledger process's successor meeting the busy ledger, or the bank stopping",
                lambda: "it starts again now" in bank.log() or "stopping the bank" in bank.log(),
            )
        finally:
            other.rollback()
            other.close()
        wait_for(
            "the ledger process serving again, or the bank stopping",
            lambda: (
                "stopping the bank" in bank.log()
                or bank.log().count("ledger process serving (") >= 2
            ),
        )
        log = bank.log()
        assert "stopping the bank" not in log, log[-5000:]
        assert "StoreBusy: SQLite is unavailable (SQLITE_BUSY)" in log, log[-5000:]
        assert "the ledger process cannot start: it starts again now" in log, log[-5000:]
        assert len(workers_of(bank.process.pid)) == 2 and ledger_process_of(bank.process.pid)
        register_merchant(bank.world, "M-ledger-busy")  # its account opened in the ledger
        assert bank.stop() == 0, bank.log()[-5000:]
    finally:
        bank.close()


def test_a_ledger_process_meeting_a_damaged_ledger_stops_the_bank(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=2, extra_env=dict(LEDGER_PROCESS))
    try:
        (ledger,) = ledger_process_of(bank.process.pid)
        with open(tmp_path / "bank" / "ledger.db", "r+b") as f:  # its header no SQLite's
            f.write(b"\xde\xad" * 50)
        os.kill(ledger, signal.SIGKILL)
        try:
            wait_for("the bank stopping", lambda: "stopping the bank" in bank.log())
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the bank's log:\n{bank.log()[-4000:]}") from None
        log = bank.log()
        assert "stopping the bank: the ledger process failed to start" in log, log[-4000:]
        assert "SQLITE_NOTADB" in log, log[-4000:]
        assert bank.process.wait(timeout=60) == 1
    finally:
        bank.close()
