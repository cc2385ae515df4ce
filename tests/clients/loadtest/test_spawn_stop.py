"""The servers the bench starts leave nothing behind: not when their parent is killed
with SIGKILL, not when they do not stop, not when the bench is interrupted while one is
still starting. Real processes throughout: the echo service with two workers, and small
servers of the test's own that start a worker of theirs and ignore SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import bench_stop
from clients.loadtest import spawn
from clients.loadtest.cpu import descendants

from .conftest import serve_echo
from .process_support import gone, kill_left

# How long an orphaned worker may take to notice (``gateway.ceiling.PARENT_CHECK_SECONDS``)
# and stop listening, with room for a loaded machine.
ORPHAN_SECONDS = 15.0

# A server that starts a worker of its own, writes both pids, ignores SIGTERM (a server
# that does not stop) and, given a port file, says it serves.
_SERVER = """
import os, signal, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1], "w") as out:
    out.write(f"{os.getpid()} {worker.pid}\\n")
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as out:
        out.write("1\\n")
time.sleep(120)
"""


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _pids(path: Path) -> list[int]:
    give_up = time.monotonic() + 30.0
    while not (path.exists() and path.read_text().endswith("\n")):
        assert time.monotonic() < give_up, "the server never wrote its pids"
        time.sleep(0.05)
    return [int(pid) for pid in path.read_text().split()]


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[spawn.Server]:
    yield from serve_echo(tmp_path, 2)


def test_the_echo_s_workers_stop_when_their_parent_is_killed(echo: spawn.Server) -> None:
    workers = [pid for pid in descendants([echo.process.pid]) if pid != echo.process.pid]
    assert len(workers) == 2 and _listening(echo.port)
    try:
        os.kill(echo.process.pid, signal.SIGKILL)
        echo.process.wait()
        assert gone(workers, ORPHAN_SECONDS), "the workers outlived their parent"
        assert not _listening(echo.port)
    finally:
        kill_left(workers)


def test_a_server_that_does_not_stop_is_killed_with_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn, "STOP_SECONDS", 0.5)
    pids = tmp_path / "pids"
    argv = [sys.executable, "-c", _SERVER, str(pids), str(tmp_path / "ports")]
    server = spawn.start("stubborn", argv, tmp_path / "ports", tmp_path / "log")
    started = _pids(pids)
    try:
        server.stop()
        assert gone(started, 5.0), "the server's worker outlived it"
    finally:
        kill_left(started)


def test_an_interrupted_start_stops_the_starting_server(tmp_path: Path) -> None:
    # SIGTERM while the bank or a reference service is still starting (a slow token login):
    # the bench exits, and what it started must not be left behind.
    pids = tmp_path / "pids"
    argv = [sys.executable, "-c", _SERVER, str(pids)]  # never says it serves
    previous = signal.getsignal(signal.SIGTERM)
    bench_stop.exit_on_stop_signals()
    started: list[int] = []

    def interrupt() -> None:  # once the server and its worker run
        started.extend(_pids(pids))
        os.kill(os.getpid(), signal.SIGTERM)

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    try:
        with pytest.raises(bench_stop.Stopped):
            spawn.start("slow", argv, tmp_path / "ports", tmp_path / "log")
        interrupter.join()
        assert len(started) == 2
        assert gone(started, 5.0), "the starting server was left running"
    finally:
        interrupter.join()
        signal.signal(signal.SIGTERM, previous)
        kill_left(started)
