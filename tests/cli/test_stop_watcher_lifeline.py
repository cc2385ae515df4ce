"""``StopWatcher`` with a lifeline numbered 1024 or more, as ``setpay bench`` may pass one
(``pass_fds`` keeps the bench's own number), and ``setpay bench serve`` refusing a
lifeline that is no pipe's read end.

The watching thread waited with ``select.select``, which raises ``ValueError`` for such a
descriptor: the thread died at once, and neither the lifeline's end nor SIGTERM was heard
from then on (only SIGKILL stopped ``setpay bench serve``).
"""

from __future__ import annotations

import os
import resource
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from cli.stop_watcher import StopWatcher
from gateway.stop_signals import open_lifeline

HIGH = 1500  # past select's FD_SETSIZE (1024)
WAIT = 5.0


@pytest.fixture
def high_lifeline() -> Iterator[tuple[int, int]]:
    """A lifeline (a pipe's read end) numbered HIGH or above, and its write end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH + 64:
        pytest.skip(f"descriptors are limited to {hard}")
    if soft != resource.RLIM_INFINITY and soft <= HIGH + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH + 64, hard))
    number = next(n for n in range(HIGH, HIGH + 64) if not _open(n))
    read, write = os.pipe()
    os.dup2(read, number)
    os.close(read)
    try:
        yield open_lifeline(number), write
    finally:
        os.close(number)
        if _open(write):
            os.close(write)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_the_end_of_a_lifeline_numbered_past_1024_is_heard(
    high_lifeline: tuple[int, int],
) -> None:
    lifeline, write = high_lifeline
    stopped = threading.Event()
    watcher = StopWatcher((signal.SIGTERM,), stopped.set, lifeline=lifeline)
    try:
        assert not stopped.wait(0.2)
        os.close(write)
        assert stopped.wait(WAIT)
        watcher.wait()
    finally:
        watcher.close()


def test_a_stop_signal_is_still_heard_beside_a_lifeline_numbered_past_1024(
    high_lifeline: tuple[int, int],
) -> None:
    lifeline, _ = high_lifeline
    stopped = threading.Event()
    watcher = StopWatcher((signal.SIGTERM,), stopped.set, lifeline=lifeline)
    try:
        assert not stopped.wait(0.2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopped.wait(WAIT)
    finally:
        watcher.close()


def test_a_pipe_s_write_end_given_to_bench_serve_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    read, write = os.pipe()
    try:
        argv = ["bench", "serve", "--mode", "echo", "--config", str(tmp_path / "none.toml"),
                "--lifeline-fd", str(write)]  # fmt: skip
        assert main(argv) == 2
    finally:
        os.close(read)
        os.close(write)
    err = capsys.readouterr().err
    assert f"--lifeline-fd: descriptor {write} is no pipe's read end" in err
    assert "Traceback" not in err
