"""How ``setpay gateway serve`` reports a worker that served and then failed as it stopped,
and a stop signal that came before its supervisor ran.

Each test runs the real command in a subprocess, through a wrapper that changes one thing:
a ledger whose close fails (``failing_close_serve``), or a pause in the moment between
preparing and supervising (``paused_start_serve``).
"""

from __future__ import annotations

import contextlib
import re
import signal
from pathlib import Path

from .failing_close_serve import CLOSE_FAILURE
from .served import STOP_SECONDS, launch, serve_bank, wait_for

LEDGER_PROCESS = {"SETPAY_LEDGER_SERVICE": "1"}


def test_a_worker_that_fails_while_stopping_says_so_not_that_it_cannot_serve(
    tmp_path: Path,
) -> None:
    command = ("tests.gateway.failing_close_serve",)
    with contextlib.closing(serve_bank(tmp_path, workers=1, command=command)) as bank:
        wait_for("the worker serving", lambda: " serving (pid " in bank.log())
        status = bank.stop()
        log = bank.log()
    assert status == 1, log
    said = rf"ERROR .*worker 0 failed while stopping: LedgerError: {re.escape(CLOSE_FAILURE)}$"
    assert re.search(said, log, re.MULTILINE), log
    assert "cannot serve" not in log
    assert re.search(r"worker 0 \(pid \d+\) stopped with exit status 1$", log, re.MULTILINE)


def test_a_sigterm_before_the_supervisor_runs_stops_it_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    # Before, SIGTERM still had its default action here: the supervisor died at once and
    # left the metrics directory and the ledger socket's directory behind.
    scratch, paused = tmp_path / "tmp", tmp_path / "paused"
    scratch.mkdir()
    started = launch(
        tmp_path, workers=1, extra_env={**LEDGER_PROCESS, "TMPDIR": str(scratch)},
        command=("tests.gateway.paused_start_serve", str(paused)),
    )  # fmt: skip
    try:
        wait_for("the supervisor paused", paused.exists)
        prepared = sorted(entry.name.split("-")[1] for entry in scratch.iterdir())
        assert prepared == ["ledger", "metrics"], prepared
        started.process.send_signal(signal.SIGTERM)
        paused.unlink()
        status = started.process.wait(timeout=STOP_SECONDS)
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(timeout=STOP_SECONDS)
    log = started.log()
    assert status == 0, log
    assert list(scratch.iterdir()) == []
    assert "stop requested before any worker started" in log
    assert " started (pid " not in log  # no worker, no ledger process
    assert not started.ports.exists()
