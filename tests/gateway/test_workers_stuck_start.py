"""A replacement worker that hangs in its start, or is being retried when the bank is
stopped: the healthy worker serves on, the stuck one is killed and started again with
the crash back-off, and a stop asked meanwhile is a clean one (exit 0, in its usual time).

Each test runs the real command (``stuck_start_serve``: a worker held in its start while
a flag file exists, its start failing as with the token away while another exists; a
start allowed START_SECONDS, a short closing margin), kills worker 0 once the bank
serves, and signals only the processes of the bank it started.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .actors import auth_request, purchase, register_cardholder, register_merchant
from .served import STOP_SECONDS, ServedBank, serve_bank, wait_for, workers_of
from .slow_start_serve import MARGIN_SECONDS, started_path
from .stuck_start_serve import START_SECONDS

GRACE_SECONDS = 1.0
SHORT = {"SETPAY_GRACE_SECONDS": str(GRACE_SECONDS), "SETPAY_NOT_SERVING_SECONDS": "0"}
# A stop's bound here (notice 0, grace, margin), with room for a loaded machine; far less
# than the start allowance a retried replacement used to be given (START_SECONDS).
STOP_BOUND = GRACE_SECONDS + MARGIN_SECONDS + 6.0


def _serve(root: Path) -> tuple[ServedBank, Path, Path]:
    """A bank of two workers (``stuck_start_serve``); its hold and token-away flags."""
    hold, away = root / "hold", root / "away"
    command = ("tests.gateway.stuck_start_serve", str(hold), str(away))
    bank = serve_bank(root, workers=2, metrics=False, extra_env=SHORT, command=command)
    return bank, hold, away


def _serving_pid(bank: ServedBank, index: int) -> int:
    """The pid of the latest worker ``index`` that said it serves."""
    *_, pid = re.findall(rf"worker {index} serving \(pid (\d+)\)", bank.log())
    return int(pid)


def _until(bank: ServedBank, what: str, check: Callable[[], bool], seconds: float) -> None:
    """Wait for ``check``; fail with the bank's log if the bank exits or time runs out."""

    def done() -> bool:
        if bank.process.poll() is not None:
            raise AssertionError(f"the bank exited waiting for {what}:\n{bank.log()}")
        return check()

    try:
        wait_for(what, done, seconds)
    except AssertionError as exc:
        if "timed out" in str(exc):
            raise AssertionError(f"{exc}:\n{bank.log()}") from None
        raise


def _held_again(bank: ServedBank, hold: Path, what: str, seconds: float) -> None:
    """Wait until a new worker is held in its start."""
    _until(bank, what, started_path(hold).exists, seconds)


def _stop(bank: ServedBank) -> tuple[int, float]:
    """SIGTERM the bank; its exit status and how long it took."""
    sent = time.monotonic()
    bank.process.send_signal(signal.SIGTERM)
    status = bank.process.wait(timeout=STOP_SECONDS)
    return status, time.monotonic() - sent


def test_a_replacement_stuck_in_its_start_is_killed_and_retried_beside_a_serving_worker(
    tmp_path: Path,
) -> None:
    """Before, a replacement that never said it serves stopped the whole bank after
    WORKER_START_SECONDS ("stopping the bank: worker 0 was not serving after ..."), the
    healthy worker and its connections with it, exit 1."""
    bank, hold, _ = _serve(tmp_path)
    with contextlib.closing(bank):
        healthy = _serving_pid(bank, 1)
        hold.touch()  # from now on a start hangs, as on a token call that never returns
        started_path(hold).unlink(missing_ok=True)
        os.kill(_serving_pid(bank, 0), signal.SIGKILL)
        _held_again(bank, hold, "the replacement stuck in its start", STOP_SECONDS)
        # The supervisor says the restart after the fork: the replacement may be held first.
        _until(bank, "the restart said", lambda: "worker 0 restarted" in bank.log(), STOP_SECONDS)
        stuck = bank.log().count("worker 0 restarted")
        started_path(hold).unlink()
        given_up = f"was not serving after {START_SECONDS:.0f} s: killing it"
        _until(bank, "the stuck one killed", lambda: given_up in bank.log(), 3 * START_SECONDS)
        _held_again(bank, hold, "its retry stuck in its start", STOP_SECONDS)
        # The healthy worker served all along, and still does.
        merchant = register_merchant(bank.world, "M-stuck-1")
        cardholder = register_cardholder(bank.world)
        auth_request(merchant, purchase(merchant, cardholder, 100))
        assert healthy in workers_of(bank.process.pid)
        status, took = _stop(bank)  # the retry still stuck
        log = bank.log()
    assert status == 0, log
    assert took < STOP_BOUND, (took, log)
    assert "stopping the bank" not in log
    assert log.count("worker 0 restarted") == stuck + 1, log
    assert log.count("cannot start while another worker serves") == 1, log
    assert re.search(rf"worker 1 \(pid {healthy}\) stopped$", log, re.MULTILINE), log


def test_a_stop_while_a_replacement_retries_its_start_is_a_clean_stop(tmp_path: Path) -> None:
    """The token away, worker 0's replacement fails its start and is retried. A stop that
    came while a retry was starting made the bank exit 1: the retry's failed start, as
    the bank stopped, was counted as a worker that failed as it stopped."""
    bank, hold, away = _serve(tmp_path)
    with contextlib.closing(bank):
        away.touch()
        os.kill(_serving_pid(bank, 0), signal.SIGKILL)
        retried = "cannot start while another worker serves"
        _until(bank, "a failed start retried", lambda: retried in bank.log(), STOP_SECONDS)
        hold.touch()  # every start from now on is held: a retry
        started_path(hold).unlink(missing_ok=True)
        _held_again(bank, hold, "a retry in its start", STOP_SECONDS)
        bank.process.send_signal(signal.SIGTERM)
        _until(bank, "the stop begun", lambda: "stopping 2 workers" in bank.log(), STOP_SECONDS)
        hold.unlink()  # the retry goes on with its start, and finds the token away
        status = bank.process.wait(timeout=STOP_SECONDS)
        log = bank.log()
    assert status == 0, log
    assert "stopping the bank" not in log
    assert "stopped with exit status 1" not in log, log
    assert re.search(r"worker 1 \(pid \d+\) stopped$", log, re.MULTILINE), log


def test_a_stop_while_a_replacement_waits_its_back_off_is_a_clean_stop(tmp_path: Path) -> None:
    bank, _, away = _serve(tmp_path)
    with contextlib.closing(bank):
        away.touch()
        os.kill(_serving_pid(bank, 0), signal.SIGKILL)
        # Its tries wait 0.5, 1, 2, then 4 s: each fails at once, so after the fourth
        # retry the supervisor waits the back-off with no worker 0.
        _until(
            bank, "four retries", lambda: bank.log().count("worker 0 restarted") >= 5, STOP_SECONDS
        )
        # The fifth fails too; its back-off (8 s) begins as the supervisor reaps it, so a
        # loaded machine may take seconds to fail that start.
        _until(bank, "the retry gone", lambda: len(workers_of(bank.process.pid)) == 1, STOP_SECONDS)
        status, took = _stop(bank)
        log = bank.log()
    assert status == 0, log
    assert took < STOP_BOUND, (took, log)
    assert "stopping 1 workers" in log, log
    assert "stopping the bank" not in log
