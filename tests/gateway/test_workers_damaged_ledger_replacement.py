"""A replacement worker that meets a damaged ledger stops the bank.

The ledger file's header overwritten while the bank serves (no ledger process: each
worker opens the file): a worker's replacement fails its start with "SQLite is
unavailable (SQLITE_NOTADB)". Taken for the ledger away (every StoreUnavailable was),
it was started again for ever, every half minute at most, the cause said once, while
the other worker served on the damaged file. It lasts until the operator restores the
file: the bank stops (``gateway.child.PASSING_FAULTS``: ``StoreAway`` alone passes).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .served import serve_bank, wait_for, workers_of


def test_a_replacement_meeting_a_damaged_ledger_stops_the_bank(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=2)
    try:
        ledger = tmp_path / "bank" / "ledger.db"
        with open(ledger, "r+b") as f:  # its header no SQLite's
            f.write(b"\xde\xad" * 50)
        os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)
        try:
            wait_for("the bank stopping", lambda: "stopping the bank" in bank.log())
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the bank's log:\n{bank.log()[-4000:]}") from None
        log = bank.log()
        assert "stopping the bank: a worker failed to start" in log, log[-4000:]
        assert "SQLITE_NOTADB" in log, log[-4000:]
        assert bank.process.wait(timeout=60) == 1
    finally:
        bank.close()
