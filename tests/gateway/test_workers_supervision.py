"""How ``setpay gateway serve``'s supervisor gives up on its children: a crash loop, a
worker stuck past its stop, a stop while a worker is still starting, and a worker left
behind by a supervisor that was killed; and how a restart waits for the ledger process.

Each test runs the real command in a session of its own, its grace period short, and
signals only the processes of the bank it started. ``slow_start_serve`` holds a worker in
its start as a worker queued on a token's login is held, and shortens the supervisor's
closing margin, so that a straggler is killed within seconds rather than ten;
``slow_ledger_serve`` holds a ledger process in its start.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from gateway.child_deadlines import WORKER_START_SECONDS, stop_deadline
from gateway.restarts import MAX_RESTARTS

from .served import (
    LEDGER_PROCESS,
    STOP_SECONDS,
    ServedBank,
    launch,
    serve_bank,
    the_ledger_process,
    wait_for,
    workers_of,
)
from .slow_ledger_serve import started_path as ledger_started_path
from .slow_start_serve import MARGIN_SECONDS, started_path

GRACE_SECONDS = 1.0
SHORT = {"SETPAY_GRACE_SECONDS": str(GRACE_SECONDS), "SETPAY_NOT_SERVING_SECONDS": "0"}
# How long the supervisor lets a serving worker take to stop, in ``slow_start_serve``.
STOP_ALLOWED = GRACE_SECONDS + MARGIN_SECONDS
# How long a restart due at once is watched for while the ledger process is held: the
# supervisor forked one within milliseconds, so a second is plenty.
HELD_SECONDS = 1.0


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped has too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def _serving(bank: ServedBank, times: int) -> Callable[[], bool]:
    """Whether the bank has said ``times`` times that a worker serves."""
    return lambda: bank.log().count(" serving (pid ") == times


def test_more_restarts_than_the_budget_allows_stop_the_bank(tmp_path: Path) -> None:
    with contextlib.closing(
        serve_bank(tmp_path, workers=1, metrics=False, extra_env=SHORT)
    ) as bank:
        for killed in range(1, MAX_RESTARTS + 2):
            (worker,) = workers_of(bank.process.pid)
            os.kill(worker, signal.SIGKILL)
            if killed <= MAX_RESTARTS:
                wait_for(f"replacement {killed} serving", _serving(bank, killed + 1))
        status = bank.process.wait(timeout=STOP_SECONDS)
        log = bank.log()
    assert status == 1, log
    assert log.count("worker 0 restarted") == MAX_RESTARTS
    assert (
        "stopping the bank: worker 0 died with no other worker serving, after"
        f" {MAX_RESTARTS} restarts within 60 s: a crash loop"
    ) in log
    # Each quick death after the first waited longer (``gateway.restarts``).
    waits = re.findall(r"worker 0 starts again in ([0-9.]+) s \(back-off\)", log)
    assert waits == ["0.5", "1.0", "2.0", "4.0"], log


def _serving_pid(bank: ServedBank, index: int) -> int:
    """The pid of the latest worker ``index`` that said it serves."""
    *_, pid = re.findall(rf"worker {index} serving \(pid (\d+)\)", bank.log())
    return int(pid)


def test_a_crash_loop_beside_a_serving_worker_backs_off_and_never_stops_the_bank(
    tmp_path: Path,
) -> None:
    """Before, each death was restarted at once and spent the bank's budget: the sixth of
    worker 0 within seconds stopped the bank (exit 1), and worker 1, serving, with it."""
    with contextlib.closing(
        serve_bank(tmp_path, workers=2, metrics=False, extra_env=SHORT)
    ) as bank:
        survivor = _serving_pid(bank, 1)
        for killed in range(1, MAX_RESTARTS + 2):
            crashed = _serving_pid(bank, 0)
            os.kill(crashed, signal.SIGKILL)
            if killed <= MAX_RESTARTS:
                wait_for(f"replacement {killed} serving", _serving(bank, killed + 2))
        wait_for("the last death seen", lambda: f"(pid {crashed}) died" in bank.log())
        time.sleep(0.5)  # the old supervisor stopped the bank at once
        alive = bank.process.poll() is None
        survived = survivor in workers_of(bank.process.pid)
        bank.process.send_signal(signal.SIGTERM)  # worker 0 still waiting: not started
        status = bank.process.wait(timeout=STOP_SECONDS)
        log = bank.log()
    assert alive and survived, log
    assert status == 0, log
    assert "stopping the bank" not in log
    waits = re.findall(r"worker 0 starts again in ([0-9.]+) s \(back-off\)", log)
    assert waits == ["0.5", "1.0", "2.0", "4.0", "8.0"], log
    assert log.count("worker 0 restarted") == MAX_RESTARTS


def test_a_worker_stuck_past_its_stop_is_killed_and_the_bank_exits_1(tmp_path: Path) -> None:
    started = launch(
        tmp_path, workers=1, metrics=False, extra_env=SHORT,
        command=("tests.gateway.slow_start_serve", str(tmp_path / "never")),
    )  # fmt: skip
    worker = None
    try:
        wait_for("the worker serving", started.ports.exists)
        (worker,) = workers_of(started.process.pid)
        os.kill(worker, signal.SIGSTOP)
        sent = time.monotonic()
        started.process.send_signal(signal.SIGTERM)
        status = started.process.wait(timeout=STOP_SECONDS)
        took = time.monotonic() - sent
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(timeout=STOP_SECONDS)
        if worker is not None and not _gone(worker):  # stopped, it would wait forever
            os.kill(worker, signal.SIGKILL)
    log = started.log()
    assert status == 1, log
    assert took >= STOP_ALLOWED, took
    assert re.search(rf"worker 0 \(pid {worker}\) did not stop: killing it$", log, re.MULTILINE)
    assert f"worker 0 (pid {worker}) stopped with signal SIGKILL" in log


def test_a_stop_waits_for_a_worker_still_starting_then_exits_0(tmp_path: Path) -> None:
    """A worker queued on a token's login when the stop came was killed once the grace
    period and margin had passed, mid-login, and the bank exited 1. Its start is due only
    WORKER_START_SECONDS after its fork: until then it is left to finish, then stops."""
    flag = tmp_path / "hold"
    flag.touch()
    started = launch(
        tmp_path, workers=1, metrics=False, extra_env=SHORT,
        command=("tests.gateway.slow_start_serve", str(flag)),
    )  # fmt: skip
    try:
        wait_for("the worker starting", started_path(flag).exists)
        (worker,) = workers_of(started.process.pid)
        started.process.send_signal(signal.SIGTERM)
        wait_for("the stop noted", lambda: "stopping 1 workers" in started.log())
        time.sleep(STOP_ALLOWED + 1.0)  # past the deadline of a worker that served
        alive = not _gone(worker)
        flag.unlink()
        status = started.process.wait(timeout=STOP_SECONDS)
    finally:
        flag.unlink(missing_ok=True)
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(timeout=STOP_SECONDS)
    log = started.log()
    assert alive, log
    assert status == 0, log
    assert "did not stop" not in log
    assert re.search(rf"worker 0 \(pid {worker}\) stopped$", log, re.MULTILINE), log
    assert not started.ports.exists()  # it served only after the stop: never announced


def test_a_child_is_due_at_the_later_of_the_stop_and_its_own_start_or_stop() -> None:
    stop = STOP_ALLOWED
    # Serving when the stop came: the bank's deadline.
    assert stop_deadline(100.0, started=0.0, ready_at=10.0, stop=stop) == 100.0
    # Still starting: not before its start is due, however early the bank's deadline.
    assert stop_deadline(100.0, started=90.0, ready_at=None, stop=stop) == 90.0 + (
        WORKER_START_SECONDS
    )
    assert stop_deadline(500.0, started=90.0, ready_at=None, stop=stop) == 500.0
    # Served only after the stop came: a whole stop from then on.
    assert stop_deadline(100.0, started=90.0, ready_at=120.0, stop=stop) == 120.0 + stop


def test_a_worker_whose_supervisor_was_killed_stops_by_itself(tmp_path: Path) -> None:
    with contextlib.closing(
        serve_bank(tmp_path, workers=1, metrics=False, extra_env=SHORT)
    ) as bank:
        (worker,) = workers_of(bank.process.pid)
        try:
            bank.process.kill()
            bank.process.wait(timeout=STOP_SECONDS)
            wait_for("the orphaned worker gone", lambda: _gone(worker))
        finally:
            if not _gone(worker):
                os.kill(worker, signal.SIGKILL)
        log = bank.log()
    assert "worker 0: the supervisor is gone; stopping" in log
    assert "failed" not in log and "Traceback" not in log


def test_a_restart_due_while_the_ledger_process_restarts_waits_until_it_serves(
    tmp_path: Path,
) -> None:
    """Before, a worker index due to start again was forked whether or not a restarted
    ledger process served yet: the new worker dials it as it starts, failed to start, and
    a worker that cannot start stops the bank (exit 1), serving workers and all."""
    flag = tmp_path / "hold"
    with contextlib.closing(
        serve_bank(
            tmp_path,
            workers=2,
            metrics=False,
            extra_env={**SHORT, **LEDGER_PROCESS},
            command=("tests.gateway.slow_ledger_serve", str(flag)),
        )
    ) as bank:
        flag.touch()  # from now on a ledger process is held in its start
        try:
            os.kill(the_ledger_process(bank), signal.SIGKILL)
            wait_for("the new ledger process held", ledger_started_path(flag).exists)
            crashed = _serving_pid(bank, 0)
            os.kill(crashed, signal.SIGKILL)  # its first death: due at once
            wait_for("its death seen", lambda: f"(pid {crashed}) died" in bank.log())
            time.sleep(HELD_SECONDS)
            forked_early = bank.log().count("worker 0 started") > 1
        finally:
            flag.unlink(missing_ok=True)
        assert not forked_early, bank.log()
        wait_for("worker 0 serving again", lambda: bank.log().count("worker 0 serving (pid") == 2)
        alive = bank.process.poll() is None
        bank.process.send_signal(signal.SIGTERM)
        status = bank.process.wait(timeout=STOP_SECONDS)
        log = bank.log()
    assert alive, log
    assert status == 0, log
    assert "stopping the bank" not in log
    # Started once the new ledger process said it serves.
    assert log.index("worker 0 restarted") > log.rindex("ledger process serving (pid"), log
