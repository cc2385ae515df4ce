"""``setpay bench serve`` stopped by a signal: heard on a thread of its own
(``cli.stop_watcher``), its workers' SIGTERM on their wakeup pipe
(``gateway.stop_signals``), so that no handler sets an Event its own thread may be waiting
on, holding that Event's lock; and a stop still ends the command, exit 0.

The handler tests run ``tests.cli.bench_stop_probe`` in a process of its own: a handler
that blocked would hang the suite, and the signals are the process's. The others stop the
real command, serving the echo with one worker and with two."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.provisioning import init_bank

REPOSITORY = Path(__file__).resolve().parents[2]
# Bounds a hang, not a performance assertion: past the probe's own bound on the handler
# (HANDLER_SECONDS), its start, and its wait for the stop; a loaded 2-core machine is slow.
PROBE_SECONDS = 90.0
# Bounds the command's start and its stop (the echo's drain is at once): forked workers on
# a loaded 2-core machine may take many seconds.
START_SECONDS = 60.0
STOP_SECONDS = 60.0
# How often the test looks whether the command has written its port file.
POLL_SECONDS = 0.05


def _probe(scenario: str) -> tuple[int, str, str]:
    """Run the probe in ``scenario``; (status, stdout, stderr)."""
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "tests.cli.bench_stop_probe", scenario], cwd=REPOSITORY,
            capture_output=True, text=True, timeout=PROBE_SECONDS, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"the probe ({scenario}) did not end within {PROBE_SECONDS} s")
    return finished.returncode, finished.stdout, finished.stderr


def _report(out: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(out.splitlines()[-1])
    return report


def test_bench_serves_handler_returns_at_once_while_its_thread_holds_the_stop_lock() -> None:
    """The thread ``gateway.ceiling.serve`` waits in, holding its stop Event's condition
    lock as that Event's ``wait`` does, runs the installed SIGTERM handler: it returns at
    once; the real SIGTERM that follows sets the Event; the handlers and wakeup fd found are
    back afterwards.

    Before: the handler set that Event, and so waited for the lock its own thread held,
    forever (the probe's faulthandler ends it, exit 1, with the stuck thread's traceback)."""
    status, out, err = _probe("bench")
    assert status == 0, err
    assert out.splitlines()[0] == "handler returned", out
    assert _report(out) == {
        "status": 0, "heard": True, "handlers_back": True, "wakeup_back": True,
    }  # fmt: skip


def test_a_ceiling_workers_handler_returns_at_once_while_it_holds_its_events_locks() -> None:
    """A worker of ``bench serve --workers N``, holding the condition lock of every Event
    it made, runs its SIGTERM handler: it returns at once; the real SIGTERM its parent
    sends then ends the worker, which closes what it served.

    Before: the handler set the Event the worker waits on (for the stop, a second at a
    time), and so waited for itself forever (faulthandler: exit 1)."""
    status, out, err = _probe("worker")
    assert status == 0, err
    assert out.splitlines()[0] == "handler returned", out
    assert _report(out) == {"status": 0, "heard": True}


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bank's configuration, its keys in files (the echo needs its TLS)."""
    directory = tmp_path_factory.mktemp("bench-stop") / "bank"
    init_bank(directory, profile="ec", merchant_tls=True, env={})
    return directory / "setpay.toml"


@pytest.mark.parametrize(
    ("workers", "signum"),
    [(1, signal.SIGTERM), (1, signal.SIGINT), (2, signal.SIGTERM), (2, signal.SIGINT)],
)
def test_a_stop_signal_ends_bench_serve_with_exit_0(
    bank: Path, tmp_path: Path, workers: int, signum: int
) -> None:
    ports = tmp_path / "ports"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "bench", "serve", "--mode", "echo",
         "--config", str(bank), "--listen", "127.0.0.1:0", "--workers", str(workers),
         "--port-file", str(ports)],
        cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its workers with it, killed as a group if it hangs
    )  # fmt: skip
    try:
        give_up = time.monotonic() + START_SECONDS
        while not ports.exists() and process.poll() is None and time.monotonic() < give_up:
            time.sleep(POLL_SECONDS)
        assert ports.exists(), "bench serve did not serve"
        process.send_signal(signum)
        try:
            _, err = process.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"bench serve did not stop within {STOP_SECONDS} s of the signal")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
