"""``setpay merchant serve`` stopped by a signal (``cli.stop_watcher``): its handler sets no
Event, so one that comes while the main thread holds the stop Event's lock returns at once;
a stop while starting ends the start ("stopped before serving"), one while serving drains;
both exit 0 and put back the handlers and wakeup fd found.

Each test runs ``tests.cli.serve_stop_probe`` in a process of its own: a handler that
blocked would hang the suite, and the signals are the process's. The real merchant's stops
are ``tests.clients.merchant.test_merchant_cli`` and ``test_resume_rounds``."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.serve_stop_probe import PORT

REPOSITORY = Path(__file__).resolve().parents[2]
# Bounds a hang, not a performance assertion: the probe imports the merchant's command and
# is serving within seconds; a loaded 2-core machine may take much longer.
START_SECONDS = 60.0
# Past the probe's own bound on the handler (HANDLER_SECONDS), and its start.
STOP_SECONDS = 90.0


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
