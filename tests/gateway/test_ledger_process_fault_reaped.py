"""The ledger process's start fault is read as the supervisor reaps it, even when its
ready pipe was not read before: a worker's is (``Supervisor._reap``), the ledger
process's was not. Its pipe closed unread, a busy ledger's successor (``?StoreBusy``, a
fault that passes: ``gateway.restarts``) was judged a start failure with no cause,
lasting, and the bank stopped, when the process wrote its fault line and exited between
the supervisor's wake and its reaping."""

from __future__ import annotations

import os
import selectors
import time
from pathlib import Path

from gateway.child import LEDGER_INDEX, WatchedChild
from gateway.config import BankConfig
from gateway.supervisor_signals import SupervisorSignals
from gateway.worker import WorkerPlan
from gateway.workers import Supervisor

BUSY = "?StoreBusy: SQLite is unavailable (SQLITE_BUSY)"
WAIT = 10.0


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


def test_a_ledger_process_s_fault_unread_as_it_is_reaped_is_still_judged(
    tmp_path: Path,
) -> None:
    plan = WorkerPlan(
        config=BankConfig(base_dir=tmp_path),
        listen="127.0.0.1:0",
        ca_listen="127.0.0.1:0",
        metrics=False,
        supervisor_pid=os.getpid(),
        ledger_socket=str(tmp_path / "ledger.sock"),
    )
    signals = SupervisorSignals()
    supervisor = Supervisor(plan, 2, signals=signals, inherited=[])
    spawned: list[bool] = []
    supervisor._spawn_ledger = lambda: spawned.append(True)  # type: ignore[method-assign]
    try:
        supervisor._restarts.opened = True  # the bank served
        pid, read_fd = _failed_start(BUSY)
        supervisor._selector.register(read_fd, selectors.EVENT_READ, pid)
        ledger = WatchedChild(LEDGER_INDEX, pid, read_fd, time.monotonic(), replaces=True)
        supervisor._ledger = ledger

        supervisor._reap()  # its pipe never read by the loop

        assert ledger.fault == BUSY
        assert not supervisor._failed and not supervisor._stopping()
        assert spawned == [True]  # started again
    finally:
        supervisor._selector.close()
        signals.close()
