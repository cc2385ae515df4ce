"""A worker's replacement that starts while the ledger process dies is started again.

The worker and the ledger process killed 50 ms apart: the replacement connected to the
ledger process as it died, failed its start ("the ledger service connection failed:
Connection reset by peer"), and the supervisor, taking that for a fault that would not
pass, stopped the whole bank ("a worker failed to start") though its other worker
served. The ledger away is a fault that passes (``gateway.child.PASSING_FAULTS``): the
replacement is backed off and started again, once the ledger process is back.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .served import LEDGER_PROCESS, ledger_process_of, serve_bank, wait_for, workers_of


@pytest.mark.parametrize("gap", [0.0, 0.02, 0.04, 0.06, 0.08, 0.1])
def test_a_worker_replaced_as_the_ledger_process_dies_serves_again(
    tmp_path: Path, gap: float
) -> None:
    bank = serve_bank(tmp_path, workers=2, extra_env=dict(LEDGER_PROCESS))
    try:
        (worker, _), (ledger,) = workers_of(bank.process.pid), ledger_process_of(bank.process.pid)
        os.kill(worker, signal.SIGKILL)
        time.sleep(gap)
        os.kill(ledger, signal.SIGKILL)
        try:
            wait_for("both replaced, or the bank stopping", lambda: "stopping the bank"
                     in bank.log() or bank.log().count(" serving (pid ") >= 5)  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the bank's log:\n{bank.log()[-4000:]}") from None
        assert "stopping the bank" not in bank.log(), bank.log()
        assert len(workers_of(bank.process.pid)) == 2 and ledger_process_of(bank.process.pid)
        assert bank.stop() == 0, bank.log()
    finally:
        bank.close()
