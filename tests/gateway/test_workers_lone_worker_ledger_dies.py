"""A lone worker's replacement that starts while the ledger process dies serves again.

With one worker (or every worker dying with the ledger process) the replacement that
dialled the ledger process as it died failed its start ("the ledger service connection
failed: Connection reset by peer") with no other worker serving, and the supervisor
stopped the bank at once ("a worker failed to start"), though the ledger process served
again a few milliseconds later (7 of 18 runs). The ledger away passes: with nothing
serving, the replacement is started again until nothing has served for a minute
(``gateway.restarts``), and serves once the ledger process is back.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .served import LEDGER_PROCESS, ServedBank, ledger_process_of, serve_bank, wait_for, workers_of

# How long the replacement is given to dial the stopped ledger process: its start takes
# a few tenths of a second here, and it then waits for its answer (``RemoteLedgerStore``).
DIAL_SECONDS = 2.0


def _serves_again(bank: ServedBank) -> None:
    """Both replaced (four serving lines in all), or the bank stopping; then serving."""
    try:
        wait_for("both replaced, or the bank stopping", lambda: "stopping the bank"
                 in bank.log() or bank.log().count(" serving (pid ") >= 4)  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the bank's log:\n{bank.log()[-4000:]}") from None
    assert "stopping the bank" not in bank.log(), bank.log()[-4000:]
    assert len(workers_of(bank.process.pid)) == 1 and ledger_process_of(bank.process.pid)
    assert bank.stop() == 0, bank.log()


def test_a_lone_worker_replaced_as_the_ledger_process_dies_serves_again(tmp_path: Path) -> None:
    """The race made certain: the ledger process stopped, the worker killed, its
    replacement dialling the stopped process and waiting; then the ledger process dies."""
    bank = serve_bank(tmp_path, workers=1, extra_env=dict(LEDGER_PROCESS))
    try:
        (worker,), (ledger,) = workers_of(bank.process.pid), ledger_process_of(bank.process.pid)
        os.kill(ledger, signal.SIGSTOP)
        try:
            os.kill(worker, signal.SIGKILL)
            wait_for("its replacement", lambda: "worker 0 restarted" in bank.log())
            time.sleep(DIAL_SECONDS)
        finally:
            os.kill(ledger, signal.SIGKILL)
        _serves_again(bank)
        log = bank.log()
        assert "cannot start and no other worker serves" in log, log[-4000:]
        assert "StoreAway: the ledger service connection failed" in log, log[-4000:]
    finally:
        bank.close()


@pytest.mark.parametrize("gap", [0.0, 0.02, 0.04, 0.06, 0.08, 0.1])
def test_a_lone_worker_killed_just_before_the_ledger_process_serves_again(
    tmp_path: Path, gap: float
) -> None:
    """As it happens: the two killed ``gap`` seconds apart."""
    bank = serve_bank(tmp_path, workers=1, extra_env=dict(LEDGER_PROCESS))
    try:
        (worker,), (ledger,) = workers_of(bank.process.pid), ledger_process_of(bank.process.pid)
        os.kill(worker, signal.SIGKILL)
        time.sleep(gap)
        os.kill(ledger, signal.SIGKILL)
        _serves_again(bank)
    finally:
        bank.close()
