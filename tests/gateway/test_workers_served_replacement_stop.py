"""A replacement worker that served, then stuck past the bank's stop, fails the stop
(exit 1): only a replacement that never served is spared (``gateway.child_deadlines
.spared``). And the kill of a spared one, which fails nothing, is no error in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.child import WatchedChild
from gateway.child_deadlines import StopDeadlines

from .served import STOP_SECONDS, ServedBank, serve_bank, wait_for

SHORT = {"SETPAY_GRACE_SECONDS": "1", "SETPAY_NOT_SERVING_SECONDS": "0"}


def _serving_pids(bank: ServedBank, index: int) -> list[int]:
    """The pids of the workers ``index`` that said they serve, in order."""
    return [int(p) for p in re.findall(rf"worker {index} serving \(pid (\d+)\)", bank.log())]


def test_a_served_replacement_stuck_past_its_stop_fails_the_stop(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=2, metrics=False, extra_env=SHORT)
    with contextlib.closing(bank):
        os.kill(_serving_pids(bank, 0)[-1], signal.SIGKILL)
        wait_for("the replacement serving", lambda: len(_serving_pids(bank, 0)) == 2, 60)
        replacement = _serving_pids(bank, 0)[-1]
        os.kill(replacement, signal.SIGSTOP)  # it served; now it never stops
        try:
            bank.process.send_signal(signal.SIGTERM)
            status = bank.process.wait(timeout=STOP_SECONDS)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(replacement, signal.SIGKILL)
        log = bank.log()
    assert status == 1, log
    assert re.search(
        rf"ERROR setpay.workers: worker 0 \(pid {replacement}\) did not stop: killing it$",
        log,
        re.MULTILINE,
    ), log
    assert "a replacement that never served" not in log, log


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


@pytest.mark.parametrize(
    ("replaces", "served", "level", "words"),
    [
        (True, False, logging.WARNING, "a replacement that never served, did not stop"),
        (True, True, logging.ERROR, "did not stop"),
        (False, False, logging.ERROR, "did not stop"),
    ],
)
def test_a_straggler_killed_is_an_error_unless_a_replacement_that_never_served(
    caplog: pytest.LogCaptureFixture, replaces: bool, served: bool, level: int, words: str
) -> None:
    process = _sleeper()
    try:
        now = time.monotonic()
        child = WatchedChild(0, process.pid, None, now - 100.0, replaces=replaces, retry=True)
        child.ready_at = now - 50.0 if served else None
        caplog.set_level(logging.INFO, logger="setpay.workers")
        killed = StopDeadlines(now - 1.0, 0.0).kill_stragglers(now, [child])
        assert killed == [child] and child.killed
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
    [record] = [r for r in caplog.records if "killing it" in r.getMessage()]
    assert record.levelno == level and words in record.getMessage(), record.getMessage()
    if level == logging.ERROR:
        assert "never served" not in record.getMessage()
