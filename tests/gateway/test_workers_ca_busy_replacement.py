"""A replacement worker meeting ca.db's write lock held past the busy timeout (``setpay
ca revoke``, an operator's shell) is started again, its other worker serving meanwhile;
one meeting a damaged ca.db still stops the bank.

The replacement opens ca.db as it starts, its schema's BEGIN IMMEDIATE waiting the busy
timeout for the lock: it failed with the CA's plain StoreError, a fault that lasts, and
the supervisor stopped the whole bank ("a worker failed to start"). It is ca.db busy now
(the CA's ``StoreBusy``), a fault that passes (``gateway.child.PASSING_FAULTS``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

from .actors import register_merchant
from .served import serve_bank, wait_for, workers_of

BUSY = "StoreBusy: cannot open CA database"


def test_a_replacement_meeting_a_busy_ca_db_is_started_again(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=2)
    try:
        other = sqlite3.connect(tmp_path / "bank" / "ca.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # held until the replacement met it, then let go
            os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)
            wait_for("the replacement meeting the busy ca.db, or the bank stopping",
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
        register_merchant(bank.world, "M-ca-busy")  # the CA and the gateway answer
        assert bank.stop() == 0, bank.log()[-5000:]
    finally:
        bank.close()


def test_a_replacement_meeting_a_damaged_ca_db_stops_the_bank(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=2)
    try:
        with open(tmp_path / "bank" / "ca.db", "r+b") as f:  # its header no SQLite's
            f.write(b"\xde\xad" * 50)
        os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)
        try:
            wait_for("the bank stopping", lambda: "stopping the bank" in bank.log())
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the bank's log:\n{bank.log()[-4000:]}") from None
        log = bank.log()
        assert "stopping the bank: a worker failed to start" in log, log[-4000:]
        assert "StoreBusy" not in log, log[-4000:]
        assert bank.process.wait(timeout=60) == 1
    finally:
        bank.close()
