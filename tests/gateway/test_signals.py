"""How ``setpay gateway serve`` takes its signals: Ctrl-C on the whole process group, a
signal to one child, a second SIGTERM, SIGTERM while the workers are still starting.

Each test runs the real command in a session of its own (``served.launch``) and reads
what it logged and how it exited.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal
import time
from datetime import datetime
from pathlib import Path

from gateway.worker import PARENT_CHECK_SECONDS

from .served import (
    LEDGER_PROCESS,
    STOP_SECONDS,
    ServedBank,
    launch,
    ledger_process_of,
    serve_bank,
    the_ledger_process,
    wait_for,
    workers_of,
)

# A bank whose supervisor starts a worker again at once after a quick death.
QUICK_RESTART = ("tests.gateway.quick_restart_serve",)
# What a worker logs when it notices a stop signal (gateway.worker.run_worker).
_NOTICED = ": stop signal received; NOT_SERVING for"
# tgkill(2): a signal for one thread of a process, as the kernel hands a process's signal to
# any thread that does not block it (two signals arriving together often land that way).
_SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


def _stops(log: str) -> list[str]:
    return [line for line in log.splitlines() if ") stopped" in line or ") died" in line]


def test_ctrl_c_stops_the_ledger_process_only_after_the_workers(tmp_path: Path) -> None:
    # A terminal's Ctrl-C sends SIGINT to every process of the group at once. The ledger
    # process must still outlive the workers, which drain their calls through it.
    with contextlib.closing(serve_bank(tmp_path, workers=2, extra_env=LEDGER_PROCESS)) as bank:
        the_ledger_process(bank)
        os.killpg(bank.process.pid, signal.SIGINT)
        assert bank.process.wait(timeout=STOP_SECONDS) == 0, bank.log()
        stops = _stops(bank.log())
        assert len(stops) == 3, stops
        assert "ledger process (pid" in stops[-1] and stops[-1].endswith("stopped"), stops


def test_sigint_to_the_ledger_process_alone_does_not_stop_it(tmp_path: Path) -> None:
    with contextlib.closing(serve_bank(tmp_path, workers=1, extra_env=LEDGER_PROCESS)) as bank:
        ledger = the_ledger_process(bank)
        os.kill(ledger, signal.SIGINT)
        time.sleep(1.5)  # a ledger process that took it would be gone (and replaced) by now
        assert ledger_process_of(bank.process.pid) == [ledger]
        assert "died" not in bank.log()
        assert bank.stop() == 0, bank.log()


def test_a_second_sigterm_neither_hurries_nor_breaks_the_stop(tmp_path: Path) -> None:
    with contextlib.closing(serve_bank(tmp_path, workers=2, metrics=False)) as bank:
        bank.process.send_signal(signal.SIGTERM)
        bank.process.send_signal(signal.SIGTERM)
        assert bank.process.wait(timeout=STOP_SECONDS) == 0, bank.log()
        log = bank.log()
        assert log.count("stop requested") == 1
        assert [s.endswith("stopped") for s in _stops(log)] == [True, True]


def test_sigterm_while_the_workers_start_stops_them_cleanly(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    started = launch(tmp_path, workers=2, extra_env={**LEDGER_PROCESS, "TMPDIR": str(scratch)})
    try:
        wait_for("a child started", lambda: " started (pid " in started.log())
        started.process.send_signal(signal.SIGTERM)
        assert started.process.wait(timeout=STOP_SECONDS) == 0, started.log()
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(timeout=STOP_SECONDS)
    log = started.log()
    assert "stop requested" in log and "died" not in log
    assert not started.ports.exists()  # never announced: it never served
    assert list(scratch.iterdir()) == []  # the metrics and ledger socket directories
    assert workers_of(started.process.pid) == []


def _signal_a_thread_other_than_main(pid: int, signum: int) -> None:
    number = _SYS_TGKILL.get(platform.machine())
    assert number is not None, f"no tgkill number known for {platform.machine()}: add it"
    others = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if int(t.name) != pid]
    assert others, "a serving worker runs gRPC's threads"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(number, pid, others[-1], signum) == 0, ctypes.get_errno()


def _seconds_to_stop_the_worker(bank: ServedBank, serving: int) -> float:
    """Once ``serving`` workers have said they serve: SIGTERM the worker on one of its
    other threads; seconds until the worker logged that it noticed (its drain and exit,
    which a loaded machine may stretch, are not counted)."""
    wait_for("the worker serving", lambda: bank.log().count(" serving (pid ") == serving)
    (worker,) = workers_of(bank.process.pid)
    time.sleep(0.3)  # it is waiting now, somewhere in its one-second wait
    sent = time.time()
    _signal_a_thread_other_than_main(worker, signal.SIGTERM)
    wait_for("the worker noticing", lambda: bank.log().count(_NOTICED) == serving)
    line = [line for line in bank.log().splitlines() if _NOTICED in line][-1]
    noticed = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    wait_for("the worker gone", lambda: f"(pid {worker}) died" in bank.log())
    return noticed - sent


def test_a_worker_acts_on_sigterm_at_once_whichever_thread_it_lands_on(tmp_path: Path) -> None:
    # Noticed only when the main thread next woke (every PARENT_CHECK_SECONDS), a SIGTERM
    # the kernel gave another thread left the worker SERVING for up to that long more.
    # Five times, by the worker's own log line (a few ms each here), all five together
    # within one such period: at random phases, five waits for the wake-up would sum to
    # less than one period in 1 run of 120 (the sum of five uniform draws), while a
    # loaded machine may stall any one of the five for most of a second and still pass.
    # Each worker stops at once once it noticed, and its replacement starts at once: the
    # default NOT_SERVING second and restart back-off (0.5 s doubling) took 8.5 s here.
    quick = {"command": QUICK_RESTART, "extra_env": {"SETPAY_NOT_SERVING_SECONDS": "0"}}
    with contextlib.closing(serve_bank(tmp_path, workers=1, metrics=False, **quick)) as bank:
        took = [_seconds_to_stop_the_worker(bank, serving) for serving in range(1, 6)]
        assert sum(took) < PARENT_CHECK_SECONDS, took
        assert bank.stop() == 0, bank.log()
