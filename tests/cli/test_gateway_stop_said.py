"""Ctrl-C on ``setpay gateway serve``, at the default log level, is answered by one line
once the bank has stopped, and by no warning. It was answered by four identical
"WARNING setpay.server: health: NOT_SERVING" lines (two servers in each of two workers)
and never said the bank had stopped."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import cli.gateway
from gateway.provisioning import InitResult, init_bank

REPOSITORY = Path(__file__).resolve().parents[2]
# A bank serves within seconds, and stops within its NOT_SERVING notice and grace period;
# a loaded 2-core CI machine may take much longer.
START_SECONDS = 60.0
STOP_SECONDS = 60.0


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("gateway-stop-said") / "bank", env={})


def test_ctrl_c_is_answered_by_one_stopped_line_and_no_warning(
    made: InitResult, tmp_path: Path
) -> None:
    port_file, out, err = tmp_path / "ports", tmp_path / "out.txt", tmp_path / "err.txt"
    argv = [
        sys.executable, "-m", "cli.main", "gateway", "serve", "--config", str(made.config_path),
        "--listen", "127.0.0.1:0", "--ca-listen", "127.0.0.1:0", "--workers", "2",
        "--port-file", str(port_file),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SETPAY_", "PROMETHEUS_"))}
    env["SETPAY_NOT_SERVING_SECONDS"] = "0"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # Its own session: Ctrl-C signals the terminal's foreground group, workers too.
        process = subprocess.Popen(
            argv, env=env, cwd=REPOSITORY, stdout=stdout, stderr=stderr, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not port_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_file.exists(), err.read_text()
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=STOP_SECONDS) == 0, err.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("setpay gateway: PaymentGateway on port")
    assert lines[1] == "setpay gateway: stopped"
    # (Its one warning is the keys.pass file ``init`` leaves in the bank directory.)
    assert "NOT_SERVING" not in err.read_text(), err.read_text()


def _serve_returning(
    monkeypatch: pytest.MonkeyPatch, code: int, *, ready: bool
) -> Callable[[], int]:
    """``cli.gateway.serve`` over a stand-in for the bank's serving that says it serves (or
    not) and returns ``code``."""

    def serving(config: object, *, on_ready: Callable[[object], None], lifeline: object) -> int:
        if ready:
            on_ready(object())
        return code

    monkeypatch.setattr(cli.gateway.workers, "serve", serving)
    monkeypatch.setattr(cli.gateway, "_announce", lambda args, config, bound: None)
    monkeypatch.setattr(cli.gateway, "warn_pin_file_in_bank", lambda config: None)
    return lambda: cli.gateway.serve(argparse.Namespace(lifeline_fd=None), object())  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [0, 1, 3])
def test_a_bank_that_never_said_it_serves_says_nothing_of_its_stop(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: int
) -> None:
    """A reader taking the first line for the ports reads no other: before the stop line, a
    bank that never served said nothing on standard output."""
    assert _serve_returning(monkeypatch, code, ready=False)() == code
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("code", [0, 1, 3])
def test_a_reader_gone_before_the_stop_line_changes_nothing_of_the_status(
    monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """``setpay gateway serve ... | head -1``: the stop line meets a reader gone, and the
    status is the bank's still (it was 141, which a service manager reads as a failure)."""
    serve = _serve_returning(monkeypatch, code, ready=True)
    read, write = os.pipe()
    os.close(read)
    stdout = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert serve() == code
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            stdout.close()
