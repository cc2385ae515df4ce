"""``setpay merchant serve`` stopped by a signal (``cli.stop_watcher``): its handler sets no
Event, so one that comes while the main thread holds the stop Event's lock returns at once;
a stop while starting ends the start ("stopped before serving"), one while serving drains;
both exit 0 and put back the handlers and wakeup fd found. Another stop signal while it
drains is answered in the log, and the drain goes on to close the merchant.

Each test runs ``tests.cli.serve_stop_probe`` in a process of its own: a handler that
blocked would hang the suite, and the signals are the process's. The real merchant's stops
are ``tests.clients.merchant.test_merchant_cli`` and ``test_resume_rounds``."""

from __future__ import annotations

import json
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

from gateway.stop_signals import REPEAT_NOTICE_SECONDS
from tests.cli.serve_stop_probe import PORT

REPOSITORY = Path(__file__).resolve().parents[2]
# Bounds a hang, not a performance assertion: the probe imports the merchant's command and
# is serving within seconds; a loaded 2-core machine may take much longer.
START_SECONDS = 60.0
# Past the probe's own bound on the handler (HANDLER_SECONDS), and its start.
STOP_SECONDS = 90.0
# Bounds the wait for a line the probe writes at once (a loaded machine gets seconds).
LINE_SECONDS = 30.0
# Past the notice's quiet second after the stop began: the second signal is answered.
PAST_QUIET_SECONDS = REPEAT_NOTICE_SECONDS + 0.5
# The answer to a stop signal while the probe's merchant drains (``cli.merchant._serve``).
NOTICE = re.compile(
    r"INFO setpay\.merchant: merchant m-probe: already stopping, its grace period ends "
    r"within \d+ s"
)


def _probe(scenario: str, signum: int | None = None) -> tuple[int, str, str]:
    """Run the probe in ``scenario``, sending ``signum`` once it serves; (status, stdout,
    stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.cli.serve_stop_probe", scenario],
        cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = ""
        if signum is not None:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], START_SECONDS)
            first = process.stdout.readline() if ready else ""
            assert "serving on port" in first, process.stderr.read() if process.stderr else ""
            process.send_signal(signum)
        try:
            out, err = process.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the probe ({scenario}) did not end within {STOP_SECONDS} s")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, first + out, err


def _report(out: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(out.splitlines()[-1])
    return report


def test_the_handler_returns_at_once_while_its_own_thread_holds_the_stop_events_lock() -> None:
    """The start-up round's thread, holding its stop Event's condition lock as that Event's
    ``wait`` does, runs the installed SIGTERM handler: it returns at once, and the real
    SIGTERM that follows ends the start, exit 0, before serving.

    Before: the handler set that Event, and so waited for the lock its own thread held,
    forever (the probe's faulthandler ends it, exit 1, with the stuck thread's traceback)."""
    status, out, err = _probe("starting")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["handler returned", "merchant m-probe stopped before serving"], out
    assert "serving on port" not in out
    assert _report(out) == {
        "status": 0, "handlers_back": True, "wakeup_back": True, "stop_asked": True,
        "closed": True,
    }  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_serving_asks_the_merchant_to_stop_then_closes_it(signum: int) -> None:
    status, out, err = _probe("serving", signum)
    assert status == 0, err
    assert out.splitlines()[0] == f"merchant m-probe serving on port {PORT}"
    assert _report(out) == {
        "status": 0, "handlers_back": True, "wakeup_back": True, "stop_asked": True,
        "closed": True,
    }  # fmt: skip
    assert "Traceback" not in err  # a SIGINT is heard, not a KeyboardInterrupt


class _Lines:
    """A stream's lines as they come, read on a thread of their own: None once it ends."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def until(self, wanted: re.Pattern[str]) -> str | None:
        """The first line ``wanted`` matches; None when the stream ends or is quiet for
        LINE_SECONDS before."""
        while True:
            try:
                line = self._lines.get(timeout=LINE_SECONDS)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.seen.append(line)
            if wanted.search(line):
                return line


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_stop_signal_while_draining_is_answered_and_the_drain_closes_the_merchant(
    signum: int,
) -> None:
    """Before: the watcher was closed before the drain, the default handlers back: a second
    SIGTERM ended the process mid-drain (-15), a second SIGINT raised KeyboardInterrupt in
    ``close`` (exit 1, a traceback), the merchant never closed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.cli.serve_stop_probe", "draining"], cwd=REPOSITORY,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None and process.stderr
    out, err = _Lines(process.stdout), _Lines(process.stderr)
    try:
        assert out.until(re.compile("serving on port")), (out.seen, err.seen)
        process.send_signal(signum)
        assert out.until(re.compile("^draining$")), (out.seen, err.seen)
        time.sleep(PAST_QUIET_SECONDS)
        process.send_signal(signum)  # a second stop, while it drains
        notice = err.until(re.compile("already stopping"))
        assert notice is not None, (process.poll(), out.seen, err.seen)
        assert NOTICE.fullmatch(notice), notice
        process.stdin.write("\n")  # the drain ends
        process.stdin.flush()
        status = process.wait(STOP_SECONDS)
        report = out.until(re.compile("^[{]"))
        err.until(re.compile("(?!)"))  # the rest of stderr, to its end
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert status == 0, err.seen
    assert report is not None, out.seen
    assert json.loads(report) == {
        "status": 0, "handlers_back": True, "wakeup_back": True, "stop_asked": True,
        "closed": True,
    }  # fmt: skip
    assert not any("Traceback" in line for line in err.seen), err.seen
