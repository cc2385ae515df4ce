"""A stop signal that comes while ``setpay gateway serve`` is already stopping is answered
in the log, by the supervisor and by a worker that gets one as it drains; the real
command, its stop made slow by its NOT_SERVING notice. ``RepeatNotice`` itself:
``test_supervisor_repeats``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from .served import STOP_SECONDS, serve_bank, wait_for, workers_of

# The quiet time after a stop begins (``gateway.stop_signals.REPEAT_NOTICE_SECONDS``),
# written out: only the real command is tested here, through its log.
REPEAT_NOTICE_SECONDS = 1.0

# Long enough that the stop is still under way when the test repeats it, a second later.
NOTICE_SECONDS = 4.0
SLOW_STOP = {"SETPAY_GRACE_SECONDS": "1", "SETPAY_NOT_SERVING_SECONDS": str(NOTICE_SECONDS)}


def test_a_second_stop_signal_is_answered_by_the_supervisor_and_the_worker(
    tmp_path: Path,
) -> None:
    """Before, both said nothing: an operator's second Ctrl-C met silence."""
    with contextlib.closing(
        serve_bank(tmp_path, workers=1, metrics=False, extra_env=SLOW_STOP)
    ) as bank:
        (worker,) = workers_of(bank.process.pid)
        bank.process.send_signal(signal.SIGTERM)
        wait_for("the worker stopping", lambda: "stop signal received" in bank.log())
        time.sleep(REPEAT_NOTICE_SECONDS + 0.2)
        bank.process.send_signal(signal.SIGTERM)
        os.kill(worker, signal.SIGINT)
        status = bank.process.wait(timeout=STOP_SECONDS)
        log = bank.log()
    assert status == 0, log
    said = re.search(r"already stopping, workers due to end within (\d+) s", log)
    assert said is not None, log
    assert 0 < int(said.group(1)) <= NOTICE_SECONDS + 1 + 10  # notice, grace, margin
    said = re.search(r"worker 0: already stopping, its grace period ends within (\d+) s", log)
    assert said is not None, log
    assert int(said.group(1)) <= NOTICE_SECONDS + 1
    assert log.count("already stopping") == 2
