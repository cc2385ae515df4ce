"""A child that dies of SIGBUS: the supervisor's line names the likely cause, a file it had
mapped (with metrics on, a sample file under the directory it names), and no other
signal gets a cause (``gateway.child_exit``).

``os.kill`` with SIGBUS on a serving worker stands in for the kernel's: the process ends
the same way (no handler of Python's catches it), and the supervisor sees only the wait
status. Each bank runs the real command; only its own processes are signalled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
from pathlib import Path

import pytest

from gateway.child_exit import Stopped, ended, stopped
from gateway.worker import CALLS_CUT

from .served import ServedBank, serve_bank, wait_for, workers_of

SHORT = {"SETPAY_GRACE_SECONDS": "1", "SETPAY_NOT_SERVING_SECONDS": "0"}
MAPPED = "a file it had mapped into memory could not back a page"


def _serving_pid(bank: ServedBank, index: int) -> int:
    """The pid of the latest worker ``index`` that said it serves."""
    *_, pid = re.findall(rf"worker {index} serving \(pid (\d+)\)", bank.log())
    return int(pid)


def _died_line(bank: ServedBank, pid: int) -> str:
    """The supervisor's line on the death of ``pid``, once it is logged."""
    wait_for(f"the death of {pid}", lambda: f"(pid {pid}) died: " in bank.log())
    (line,) = [line for line in bank.log().splitlines() if f"(pid {pid}) died: " in line]
    return line


def _replaced(bank: ServedBank, index: int, pid: int) -> None:
    wait_for(f"worker {index} serving again", lambda: _serving_pid(bank, index) != pid)


def test_a_worker_killed_by_sigbus_names_a_mapped_sample_file_and_its_directory(
    tmp_path: Path,
) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    env = {**SHORT, "PROMETHEUS_MULTIPROC_DIR": str(samples)}
    with contextlib.closing(serve_bank(tmp_path, workers=1, metrics=True, extra_env=env)) as bank:
        (worker,) = workers_of(bank.process.pid)
        os.kill(worker, signal.SIGBUS)
        line = _died_line(bank, worker)
        _replaced(bank, 0, worker)
        status = bank.stop()
    assert line.endswith(
        f"worker 0 (pid {worker}) died: signal SIGBUS ({MAPPED}: most likely a metrics"
        f" sample file under {samples}, whose filesystem is full or copy-on-write, or the"
        " file truncated under it)"
    ), line
    assert status == 0, bank.log()


def test_only_sigbus_gets_a_cause_and_without_metrics_no_directory(tmp_path: Path) -> None:
    with contextlib.closing(
        serve_bank(tmp_path, workers=2, metrics=False, extra_env=SHORT)
    ) as bank:
        killed = _serving_pid(bank, 0)
        os.kill(killed, signal.SIGKILL)
        by_kill = _died_line(bank, killed)
        bused = _serving_pid(bank, 1)
        os.kill(bused, signal.SIGBUS)
        by_bus = _died_line(bank, bused)
        _replaced(bank, 0, killed)
        status = bank.stop()
    assert by_kill.endswith(f"worker 0 (pid {killed}) died: signal SIGKILL"), by_kill
    assert by_bus.endswith(
        f"worker 1 (pid {bused}) died: signal SIGBUS ({MAPPED}: a full filesystem, or the"
        " file truncated under it)"
    ), by_bus
    assert "sample" not in by_bus
    assert status == 0, bank.log()


def test_a_worker_killed_by_a_signal_without_a_name_is_said_by_number(tmp_path: Path) -> None:
    """A real-time signal has no name in ``signal.Signals``: before, reading its name
    raised in the supervisor, which stopped supervising (its workers left to stop as
    orphans)."""
    number = signal.SIGRTMIN + 2
    with contextlib.closing(
        serve_bank(tmp_path, workers=1, metrics=False, extra_env=SHORT)
    ) as bank:
        (worker,) = workers_of(bank.process.pid)
        os.kill(worker, number)
        line = _died_line(bank, worker)
        _replaced(bank, 0, worker)
        status = bank.stop()
    assert line.endswith(f"worker 0 (pid {worker}) died: signal {number}"), line
    assert status == 0, bank.log()


@pytest.mark.parametrize(
    ("code", "samples", "said"),
    [
        (0, None, "exit status 0"),
        (3, Path("/m"), "exit status 3"),
        (-signal.SIGKILL, Path("/m"), "signal SIGKILL"),
        (-signal.SIGSEGV, Path("/m"), "signal SIGSEGV"),
        (-signal.SIGTERM, None, "signal SIGTERM"),
        (-(signal.SIGRTMIN + 3), None, f"signal {signal.SIGRTMIN + 3}"),
    ],
)
def test_no_end_but_sigbus_is_given_a_cause(code: int, samples: Path | None, said: str) -> None:
    assert ended(code, samples) == said


def test_a_sigbus_names_the_sample_directory_only_when_metrics_are_on() -> None:
    on = ended(-signal.SIGBUS, Path("/var/lib/samples"))
    off = ended(-signal.SIGBUS, None)
    assert on.startswith(f"signal SIGBUS ({MAPPED}") and "under /var/lib/samples," in on
    assert off.startswith(f"signal SIGBUS ({MAPPED}") and "sample" not in off


@pytest.mark.parametrize(
    ("index", "code", "end", "level"),
    [
        (0, 0, Stopped.CLEANLY, logging.INFO),
        (0, CALLS_CUT, Stopped.CUT_CALLS, logging.WARNING),
        (-1, CALLS_CUT, Stopped.FAILED, logging.ERROR),  # the ledger process cuts no calls
        (0, 1, Stopped.FAILED, logging.ERROR),
        (0, -signal.SIGBUS, Stopped.FAILED, logging.ERROR),
    ],
)
def test_a_child_stopping_is_judged_and_logged(
    index: int, code: int, end: Stopped, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "setpay.workers"):
        assert stopped("a child", 7, index, code, Path("/m")) is end
    (record,) = caplog.records
    assert record.levelno == level
    if code == -signal.SIGBUS:
        assert record.getMessage().startswith("a child (pid 7) stopped with signal SIGBUS (")
