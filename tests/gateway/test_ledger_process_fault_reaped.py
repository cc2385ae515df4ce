"""The ledger process's start fault is read as the supervisor reaps it, even when its
ready pipe was not read before: a worker's is (``Supervisor._reap``), the ledger
process's was not. Its pipe closed unread, a busy ledger's successor (``?StoreBusy``, a
fault that passes: ``gateway.restarts``) was judged a start failure with no cause,
lasting, and the bank stopped, when the process wrote its fault line and exited between
the supervisor's wake and its reaping.

Its ready line is read so too: one that said it serves and died (a crash, an OOM kill
within one pass of the loop) was judged a start failure with no cause, and the bank
stopped. "ledger process restarted" is said only for one that served: said at each
retry of a busy ledger, it claimed the workers would reconnect while nothing served.

The bank stopping: a ledger process started again that never served, ending of the
ledger busy as the workers drain or killed past its stop, fails no stop (``gateway.
child_deadlines.spared_at_stop``): a clean stop during a ledger outage exited 1."""

from __future__ import annotations

import logging
import os
import selectors
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.child import LEDGER_INDEX, WatchedChild
from gateway.child_deadlines import StopDeadlines
from gateway.config import BankConfig
from gateway.supervisor_signals import SupervisorSignals
from gateway.worker import WorkerPlan
from gateway.workers import Supervisor

BUSY = "?StoreBusy: SQLite is unavailable (SQLITE_BUSY)"
WAIT = 10.0
RESTARTED = "ledger process restarted; workers reconnect on their next request"


def _failed_start(line: str) -> tuple[int, int]:
    """Fork a ledger process that says ``line`` on its ready pipe and exits 1; its pid,
    dead but not reaped, and the pipe's read end."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the ledger process; never returns
        try:
            os.write(write_fd, line.encode() + b"\n")
        finally:
            os._exit(1)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:  # until it is a zombie, left for the supervisor
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return pid, read_fd
        time.sleep(0.005)
    raise AssertionError("the forked ledger process did not exit")


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[Supervisor, list[bool]]]:
    """A supervisor of a bank that served, with a ledger process; the list of ledger
    processes it started again."""
    plan = WorkerPlan(
        config=BankConfig(base_dir=tmp_path),
        listen="127.0.0.1:0",
        ca_listen="127.0.0.1:0",
        metrics=False,
        supervisor_pid=os.getpid(),
        ledger_socket=str(tmp_path / "ledger.sock"),
    )
    signals = SupervisorSignals()
    supervising = Supervisor(plan, 2, signals=signals, inherited=[])
    spawned: list[bool] = []
    supervising._spawn_ledger = lambda: spawned.append(True)  # type: ignore[method-assign]
    supervising._restarts.opened = True  # the bank served
    try:
        yield supervising, spawned
    finally:
        supervising._selector.close()
        signals.close()


def _watch(supervisor: Supervisor, line: str) -> WatchedChild:
    """A ledger process started again, that said ``line`` and died, not yet reaped."""
    pid, read_fd = _failed_start(line)
    supervisor._selector.register(read_fd, selectors.EVENT_READ, pid)
    ledger = WatchedChild(LEDGER_INDEX, pid, read_fd, time.monotonic(), replaces=True)
    supervisor._ledger = ledger
    return ledger


def test_a_ledger_process_s_fault_unread_as_it_is_reaped_is_still_judged(
    supervisor: tuple[Supervisor, list[bool]], caplog: pytest.LogCaptureFixture
) -> None:
    supervising, spawned = supervisor
    caplog.set_level(logging.INFO, "setpay.workers")
    ledger = _watch(supervising, BUSY)

    supervising._reap()  # its pipe never read by the loop

    assert ledger.fault == BUSY
    assert not supervising._failed and not supervising._stopping()
    assert spawned == [True]  # started again
    assert "it starts again now" in caplog.text
    assert RESTARTED not in caplog.text  # nothing served, nothing to reconnect to


def test_a_ledger_process_that_served_and_died_unread_is_restarted(
    supervisor: tuple[Supervisor, list[bool]], caplog: pytest.LogCaptureFixture
) -> None:
    supervising, spawned = supervisor
    caplog.set_level(logging.INFO, "setpay.workers")
    ledger = _watch(supervising, "ledger")  # its ready line, then a crash

    supervising._reap()

    assert ledger.ready and ledger.fault is None
    assert not supervising._failed and not supervising._stopping(), caplog.text
    assert spawned == [True]
    assert RESTARTED in caplog.text


def test_a_retried_ledger_process_failing_as_the_bank_stops_fails_no_stop(
    supervisor: tuple[Supervisor, list[bool]],
) -> None:
    supervising, spawned = supervisor
    _watch(supervising, BUSY)
    supervising._begin_stop()  # its try ends of the ledger busy as the workers drain

    supervising._reap()

    assert not supervising._failed
    assert spawned == []


def test_a_retried_ledger_process_killed_past_the_stop_fails_no_stop(
    supervisor: tuple[Supervisor, list[bool]],
) -> None:
    supervising, _ = supervisor
    ledger = _watch(supervising, BUSY)
    ledger.retry = True  # its index failed to start before: due with the bank
    supervising._begin_stop()
    now = time.monotonic()
    supervising._deadlines = StopDeadlines(now - 1.0, 0.0)  # every child past its due

    supervising._check_deadlines()

    assert ledger.killed and not supervising._failed
    supervising._reap()
    assert not supervising._failed
