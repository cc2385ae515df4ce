"""The bank stopped while its ledger process is being started into a busy ledger (another
program holding SQLite's write lock), started again or at the bank's first start, stops
cleanly, and at once.

The retried ledger process waited out the store's busy timeout as it opened the store
(5 s, and 10 s when the stop signal cut one of SQLite's sleeps short), exited 1 with
``?StoreBusy``, and the supervisor counted it as a failed stop: exit status 1, an ERROR
line, 5 to 10 s late, for an operator's clean ``systemctl stop`` during a ledger outage.
Asked to stop as it waits, it now gives up the wait and exits 0, saying the ledger busy
on its ready pipe all the same (``gateway.ledger_process``). For a while it exited 1 at
once, which the supervisor spared for a retry but counted as a failed stop at the bank's
first start, with two ERROR lines. Not stopped, a first start that meets a busy ledger
still stops the bank (exit 1), as any start failure at the first start does.

The minute of retries logs little: "ledger process restarted" only for the one that
served and died (each retry is said once by ``gateway.restarts``), and each worker's
health probes say their failure once (``gateway.health_monitor``), not every second.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from gateway.ledger.sqlite import BUSY_TIMEOUT_MS

from .served import (
    LEDGER_PROCESS,
    STOP_SECONDS,
    Launched,
    launch,
    ledger_process_of,
    serve_bank,
    the_ledger_process,
    wait_for,
)

WORKERS = 2
# Each worker serves the gateway and the CA, each with a health monitor of its own.
HEALTH_MONITORS = 2 * WORKERS
# From the last worker's end (the ledger process is then sent SIGTERM) to the ledger
# process's: one try of its opening (0.1 s) and its exit. It waited out what was left of
# its busy timeout (5 s from its fork, the workers' stop taking some 1.5 s of it), or
# twice that when the signal cut SQLite's wait short; a loaded machine is given room.
LEDGER_STOP_SECONDS = BUSY_TIMEOUT_MS / 1000 / 4
_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO setpay\.workers: "


def _when(log: str, said: str) -> datetime:
    """When the supervisor last logged a line matching ``said``."""
    found = [m.group(1) for m in re.finditer(f"{_STAMP}(?:{said})$", log, re.MULTILINE)]
    assert found, f"no {said!r} in:\n{log[-5000:]}"
    return datetime.strptime(found[-1], "%Y-%m-%d %H:%M:%S,%f")


def test_a_stop_during_a_busy_ledger_s_retry_is_clean_and_prompt(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=WORKERS, extra_env=dict(LEDGER_PROCESS))
    try:
        other = sqlite3.connect(tmp_path / "bank" / "ledger.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # held across the stop
            (ledger,) = ledger_process_of(bank.process.pid)
            os.kill(ledger, signal.SIGKILL)
            wait_for("the ledger process's retry", lambda: "it starts again now" in bank.log())
            # The line is logged before the retry is forked: wait for the process itself.
            the_ledger_process(bank)
            code = bank.stop()
        finally:
            other.rollback()
            other.close()
        log = bank.log()
        assert code == 0, log[-5000:]
        # Stopped, or (had it failed of the ledger busy) ended with the stop.
        ended = r"the ledger process \(pid \d+\)(?:,.* ended with the stop: .*| stopped)"
        took = _when(log, ended) - _when(log, r"worker \d \(pid \d+\) stopped")
        assert took.total_seconds() < LEDGER_STOP_SECONDS, (took, log[-5000:])
        assert "ledger process stopped while another program held" in log, log[-5000:]
        assert " stopped with exit status" not in log, log[-5000:]  # no failed stop
        assert log.count("ledger process restarted; workers reconnect") == 1, log[-5000:]
        assert log.count("health probe failed: StoreAway") <= HEALTH_MONITORS, log[-5000:]
    finally:
        bank.close()


def test_a_signal_to_the_retried_ledger_process_alone_does_not_stop_the_bank(
    tmp_path: Path,
) -> None:
    """SIGTERM to the retried ledger process only (an operator killing the retry seen in
    ps), the bank not stopping: it ends of the ledger busy, as a retry that timed out
    does, and is started again; it exited 0 with no fault line for a while, which the
    supervisor read as a start that failed of no passing fault, and stopped the bank."""
    bank = serve_bank(tmp_path, workers=1, extra_env=dict(LEDGER_PROCESS))
    try:
        other = sqlite3.connect(tmp_path / "bank" / "ledger.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            (ledger,) = ledger_process_of(bank.process.pid)
            os.kill(ledger, signal.SIGKILL)
            wait_for("the ledger process's retry", lambda: "it starts again now" in bank.log())
            # The line is logged before the retry is forked: wait for the process itself.
            retry = the_ledger_process(bank)
            os.kill(retry, signal.SIGTERM)
            wait_for("the retry's end", lambda: retry not in ledger_process_of(bank.process.pid))
        finally:
            other.rollback()
            other.close()
        serving = "ledger process serving (pid"
        wait_for(
            "the ledger process serving again, or the bank's end",
            lambda: bank.log().count(serving) >= 2 or bank.process.poll() is not None,
        )
        assert bank.process.poll() is None, bank.log()[-5000:]
        assert "stopping the bank" not in bank.log(), bank.log()[-5000:]
    finally:
        bank.close()


@contextmanager
def _first_start_into_a_busy_ledger(root: Path) -> Iterator[Launched]:
    """A bank whose ledger process, at the bank's first start, meets another program's
    write lock (held while the context lasts): the supervisor is paused once ``serve``
    has migrated the ledger and closed it, the lock taken, then let go on."""
    paused = root / "paused"
    started = launch(
        root, workers=1, extra_env=dict(LEDGER_PROCESS),
        command=("tests.gateway.paused_start_serve", str(paused)),
    )  # fmt: skip
    try:
        wait_for(
            "the supervisor paused", lambda: paused.exists() or started.process.poll() is not None
        )
        assert paused.exists(), started.log()[-5000:]
        other = sqlite3.connect(started.directory / "ledger.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            paused.unlink()
            wait_for(
                "the ledger process, or the bank's end",
                lambda: (
                    bool(ledger_process_of(started.process.pid))
                    or started.process.poll() is not None
                ),
            )
            yield started
        finally:
            other.rollback()
            other.close()
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(timeout=STOP_SECONDS)


def test_a_stop_during_the_first_start_into_a_busy_ledger_is_clean(tmp_path: Path) -> None:
    with _first_start_into_a_busy_ledger(tmp_path) as started:
        assert started.process.poll() is None, started.log()[-5000:]
        asked = time.monotonic()
        started.process.send_signal(signal.SIGTERM)
        code = started.process.wait(timeout=STOP_SECONDS)
        took = time.monotonic() - asked
    log = started.log()
    assert code == 0, log[-5000:]
    assert " ERROR " not in log, log[-5000:]
    assert "ledger process stopped while another program held" in log, log[-5000:]
    assert re.search(r"the ledger process \(pid \d+\) stopped$", log, re.MULTILINE), log[-5000:]
    assert took < BUSY_TIMEOUT_MS / 1000, (took, log[-5000:])  # the wait given up at once


def test_a_first_start_into_a_busy_ledger_still_stops_the_bank(tmp_path: Path) -> None:
    with _first_start_into_a_busy_ledger(tmp_path) as started:
        code = started.process.wait(timeout=STOP_SECONDS)  # its busy timeout out
    log = started.log()
    assert code == 1, log[-5000:]
    assert "stopping the bank: the ledger process failed to start" in log, log[-5000:]
    assert "the ledger process cannot serve: StoreBusy" in log, log[-5000:]
