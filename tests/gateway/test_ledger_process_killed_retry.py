"""A retry of the ledger process that a signal ends, while another program holds the
SQLite ledger's write lock, is one more try of that outage, not a start that failed.

The ledger process started again into a busy ledger is retried until the ledger has gone
RESTART_WINDOW_SECONDS unserved (``gateway.restarts``). A retry killed with SIGKILL (an
operator's kill -9 of the pid seen in ps, the OOM killer) says no cause on its ready
pipe, and the supervisor read it as "the ledger process failed to start": the whole bank
stopped, exit 1, the lock still held by another. It is now tried again after
FIRST_BACKOFF_SECONDS, in the same window; a retry that says a new cause (a damaged
ledger) still stops the bank at once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from gateway.child import LEDGER_INDEX
from gateway.restarts import (
    FIRST_BACKOFF_SECONDS,
    RESTART_WINDOW_SECONDS,
    Restarts,
    killed_from_outside,
)

from .ledger_restart_support import BUSY, DAMAGED, LEDGER, Clock, in_a_busy_outage
from .served import LEDGER_PROCESS, ServedBank, ledger_process_of, serve_bank, wait_for

FAILED = "the ledger process failed to start"


def test_a_try_ended_by_a_signal_is_tried_again_after_a_pause() -> None:
    clock = Clock()
    restarts = in_a_busy_outage(clock)
    refused = restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, signalled=True)
    assert refused is None
    assert restarts.known_fault(LEDGER_INDEX) == BUSY  # its successor says it at DEBUG
    assert restarts.waiting() and not restarts.ledger_due()  # not at once: no tight loop
    assert restarts.next_in(10.0) == FIRST_BACKOFF_SECONDS  # the supervisor wakes for it
    clock.now += FIRST_BACKOFF_SECONDS
    assert restarts.ledger_due()
    assert not restarts.ledger_due() and not restarts.waiting()  # taken


def test_tries_ended_by_a_signal_stay_within_the_outage_s_window() -> None:
    clock = Clock()
    restarts = in_a_busy_outage(clock)
    while clock.now + FIRST_BACKOFF_SECONDS < RESTART_WINDOW_SECONDS:
        assert restarts.refusal(LEDGER, LEDGER_INDEX, None, True, signalled=True) is None
        clock.now += FIRST_BACKOFF_SECONDS
        assert restarts.ledger_due()
    clock.now = RESTART_WINDOW_SECONDS
    refused = restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, signalled=True)
    assert refused == (
        "the ledger process failed to start with the ledger not served for 60 s (at most"
        " 60 s); the last cause: StoreBusy: SQLite is unavailable (SQLITE_BUSY)"
    )


def test_a_retry_meeting_a_new_cause_still_stops_the_bank() -> None:
    clock = Clock()
    restarts = in_a_busy_outage(clock)
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, True, signalled=True) is None
    refused = restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True, fault=DAMAGED)
    assert refused == FAILED


def test_an_end_with_no_cause_outside_a_busy_outage_still_stops_the_bank() -> None:
    # Signalled, but no busy try recorded: its successor, the first of the outage.
    restarts = Restarts(Clock())
    restarts.opened = True
    assert restarts.refusal(LEDGER, LEDGER_INDEX, ready_at=0.0, serving=True) is None
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, True, signalled=True) == FAILED
    # Within a busy outage, but it exited of itself, saying nothing: no passing fault.
    restarts = in_a_busy_outage(Clock())
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, serving=True) == FAILED
    # The outage over (a ledger process served since): the busy cause is forgotten.
    restarts = in_a_busy_outage(Clock())
    restarts.ledger_serves = True
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, True, signalled=True) == FAILED
    # At the bank's first start, as before.
    restarts = in_a_busy_outage(Clock())
    restarts.opened = False
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, True, signalled=True) == FAILED


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_kill_from_outside_is_a_try_cut_short(sig: signal.Signals) -> None:
    assert killed_from_outside(-sig)


@pytest.mark.parametrize(
    "code", [-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS, -signal.SIGILL, 0, 1]
)
def test_a_crash_or_an_exit_is_no_try_cut_short(code: int) -> None:
    """A retry crashing at every start was forked every FIRST_BACKOFF_SECONDS for the rest
    of the window, then stopped the bank naming the ledger busy: a crash stops it at once,
    as before, naming the failed start."""
    assert not killed_from_outside(code)


def test_a_stop_cancels_the_pause() -> None:
    restarts = in_a_busy_outage(Clock())
    assert restarts.refusal(LEDGER, LEDGER_INDEX, None, True, signalled=True) is None
    restarts.cancel()
    assert not restarts.waiting()
    assert not restarts.ledger_due()


def _next_ledger_process(bank: ServedBank, seen: set[int]) -> int:
    """A ledger process of ``bank`` other than those ``seen``, once there is one; fail if
    the bank ends first."""
    wait_for(
        "another ledger process, or the bank's end",
        lambda: (
            bank.process.poll() is not None or bool(set(ledger_process_of(bank.process.pid)) - seen)
        ),
    )
    assert bank.process.poll() is None, bank.log()[-5000:]
    (new,) = set(ledger_process_of(bank.process.pid)) - seen
    return new


def test_a_retry_killed_in_a_busy_outage_is_started_again(tmp_path: Path) -> None:
    bank = serve_bank(tmp_path, workers=1, extra_env=dict(LEDGER_PROCESS))
    try:
        other = sqlite3.connect(tmp_path / "bank" / "ledger.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # held until a retry was killed and followed
            (ledger,) = ledger_process_of(bank.process.pid)
            os.kill(ledger, signal.SIGKILL)
            first = _next_ledger_process(bank, {ledger})  # meets the busy ledger
            # Forked only once the first failed of the ledger busy: the outage is known.
            second = _next_ledger_process(bank, {ledger, first})
            os.kill(second, signal.SIGKILL)
            _next_ledger_process(bank, {ledger, first, second})
        finally:
            other.rollback()
            other.close()
        wait_for(
            "the ledger process serving again, or the bank's end",
            lambda: (
                bank.process.poll() is not None or bank.log().count("ledger process serving (") >= 2
            ),
        )
        log = bank.log()
        assert "stopping the bank" not in log, log[-5000:]
        assert f"the ledger process (pid {second}) died: signal SIGKILL" in log, log[-5000:]
        assert "the ledger process cannot start: it starts again in 0.5 s" in log, log[-5000:]
        assert bank.stop() == 0, bank.log()[-5000:]
    finally:
        bank.close()
