"""Every one of four workers killed as the ledger process dies: the bank serves again.

Each replacement failing of the ledger away with nothing serving spent a restart of the
budget (5 in 60 s): one death with nothing serving, the ledger process's, then four
replacements failing as it came back, 6 in all, stopped the bank ("worker 3 failed to
start with no other worker serving, after 5 restarts within 60 s", of a worker that had
failed once) though the ledger process served again a millisecond before. With nothing
serving, a replacement failing of a cause that passes is started again until nothing has
served for a minute (``gateway.restarts``), spending nothing of the budget.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from .served import LEDGER_PROCESS, ledger_process_of, serve_bank, wait_for, workers_of

WORKERS = 4
# How long the replacements are given to dial the stopped ledger process (as
# ``test_workers_lone_worker_ledger_dies``): each then waits for its answer.
DIAL_SECONDS = 2.0
# A worker's serving line; the ledger process's ("ledger process serving (pid") is not
# one: counted too, the wait could end with two of the four replacements yet to serve.
_WORKER_SERVING = re.compile(r"\bworker \d+ serving \(pid ")


def _workers_serving(log: str) -> int:
    """How many times a worker said it serves: each of the first four, then each
    replacement."""
    return len(_WORKER_SERVING.findall(log))


def test_four_workers_killed_as_the_ledger_process_dies_serve_again(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=WORKERS, extra_env=dict(LEDGER_PROCESS))
    try:
        workers, (ledger,) = workers_of(bank.process.pid), ledger_process_of(bank.process.pid)
        assert len(workers) == WORKERS
        os.kill(ledger, signal.SIGSTOP)
        try:
            for worker in workers:
                os.kill(worker, signal.SIGKILL)
            wait_for("the replacements", lambda: bank.log().count(" restarted") >= WORKERS)
            time.sleep(DIAL_SECONDS)
        finally:
            os.kill(ledger, signal.SIGKILL)
        wait_for("all replaced, or the bank stopping", lambda: "stopping the bank"
                 in bank.log() or _workers_serving(bank.log()) >= 2 * WORKERS)  # fmt: skip
        log = bank.log()
        assert "stopping the bank" not in log, log[-5000:]
        assert "cannot start and no other worker serves" in log, log[-5000:]
        assert len(workers_of(bank.process.pid)) == WORKERS
        assert bank.stop() == 0, bank.log()[-5000:]
    finally:
        bank.close()
