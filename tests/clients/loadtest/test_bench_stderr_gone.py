"""``setpay bench authorize ... 2>&1 | head -1``: the run's messages along the way (a step
begun, the progress bars) go to standard error; their reader gone, they are lost and the
run goes on. Before, the first message after the reader left broke the run: a failed
report ("[Errno 32] Broken pipe") and 141, however the run would have gone.

The run's status then follows the bench's rule for its standard output (with --json
written, the run's own: ``test_bench_reader_gone``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import bench as cli_bench

from .conftest import run_bench
from .went_right import went_right

PROJECT = Path(__file__).resolve().parents[3]
# A short run of a spawned bank: a few seconds, most of them the bank's start.
RUN = ["--rate", "20", "--duration", "1", "--cardholders", "2", "--channels", "2"]
# Bounds the child's whole run (a bank created, started, benched, stopped).
CHILD_TIMEOUT_SECONDS = 180


@pytest.fixture
def gone_stderr() -> Iterator[int]:
    """A pipe whose reader has gone; its write end (``_stderr_into``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    yield write_end
    os.close(write_end)


def _stderr_into(fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # In the test itself: pytest puts its own capture back after the fixtures.
    monkeypatch.setattr(sys, "stderr", os.fdopen(fd, "w", closefd=False))


def _is_null(fd: int) -> bool:
    return os.path.samestat(os.fstat(fd), os.stat(os.devnull))


def test_a_message_to_a_gone_reader_is_lost_not_the_run(
    gone_stderr: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stderr_into(gone_stderr, monkeypatch)
    cli_bench._say("creating a bank")  # a BrokenPipeError before
    assert _is_null(gone_stderr)
    cli_bench._say("warm-up against the gateway")


def test_a_run_whose_stderr_reader_left_first_reports_its_own_status(
    gone_stderr: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No message said: the progress bars are the first to meet the gone reader."""
    _stderr_into(gone_stderr, monkeypatch)
    monkeypatch.setattr(cli_bench, "_say", lambda message: None)
    report = tmp_path / "report.json"
    argv = ["authorize", "--spawn", "--workdir", str(tmp_path / "run"), *RUN]
    code = run_bench([*argv, "--json", str(report)])
    found: dict[str, Any] = json.loads(report.read_text())
    assert "failed" not in found, found["failed"]
    assert went_right(code, found), (code, found.get("doubts"))
    assert _is_null(gone_stderr)


def test_a_run_into_head_with_its_stderr_keeps_its_status(tmp_path: Path) -> None:
    """``2>&1 | head -1``, the command as a shell runs it: one pipe for both outputs,
    whose reader takes the first line and goes."""
    report = tmp_path / "report.json"
    argv = ["bench", "authorize", "--spawn", "--workdir", str(tmp_path / "run"), *RUN]
    read_end, write_end = os.pipe()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *argv, "--json", str(report)],
            stdout=write_end, stderr=write_end, cwd=PROJECT, env=env,
        )  # fmt: skip
    finally:
        os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as head:
            first = head.readline()
        code = child.wait(timeout=CHILD_TIMEOUT_SECONDS)
    finally:
        if child.poll() is None:  # stopped by its SIGTERM handler: its bank stopped too
            child.terminate()
            child.wait(timeout=CHILD_TIMEOUT_SECONDS)
    assert first.startswith(b"setpay bench: "), first
    found: dict[str, Any] = json.loads(report.read_text())
    assert "failed" not in found, found["failed"]
    assert went_right(code, found), (code, found.get("doubts"))
