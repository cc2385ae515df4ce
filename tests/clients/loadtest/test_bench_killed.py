"""A bench killed with SIGKILL (or by the OOM killer) runs none of its own clean-up: the
servers it spawned, in sessions of their own, stop by their lifeline instead
(``clients.loadtest.spawn``), as SIGTERM stops them: drained, closed, exit 0.

Real processes: ``setpay bench authorize --spawn --ceiling`` with two workers and the
ledger process, under a subreaper of the test's (as under systemd, tini or a container's
init), which the servers are handed to when the bench dies, so that their parent's pid
tells them nothing; the subreaper reaps them and says how each ended. And the parts: the
option refused when it names no pipe, the supervisor's and the ``StopWatcher``'s
lifelines."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli import gateway
from cli.main import build_parser
from cli.stop_watcher import StopWatcher
from clients.loadtest.cpu import descendants
from gateway.ledger_process import PROCESS_NAME
from gateway.stop_signals import open_lifeline
from gateway.supervisor_signals import SupervisorSignals

from .process_support import gone, kill_left

# How long the bench may take to make its bank, start the three servers and register its
# cardholders, on a loaded machine (a bank's start alone may take STARTUP_SECONDS).
START_SECONDS = 240.0
# How long the servers may take to stop once the bench is gone: NOT_SERVING (1 s), the
# grace period of the bank ``setpay init`` makes (5 s), the closing, with room for a loaded
# machine; the processes' stop would be cut at their own deadlines well before.
STOPPED_SECONDS = 45.0
# What the bench says once the first measured run is under way: the servers serve and the
# load flows.
RUNNING = " s against the gateway"
# A subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``) that starts the bench, writes its pid,
# then reaps every process handed to it, writing "PID STATUS" for each, until none is left.
_SUBREAPER = """
import ctypes, os, subprocess, sys
PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
work = sys.argv[1]
with open(os.path.join(work, "bench.out"), "wb") as out:
    bench = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
with open(os.path.join(work, "bench.pid"), "w") as out:
    out.write(f"{bench.pid}\\n")
with open(os.path.join(work, "reaped"), "w") as reaped:
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        reaped.write(f"{pid} {os.waitstatus_to_exitcode(status)}\\n")
        reaped.flush()
"""


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _comm(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes().strip()
    except OSError:
        return b""


def _wait_for(path: Path, text: str, subreaper: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + START_SECONDS
    while not (path.exists() and text in path.read_text(errors="replace")):
        said = path.read_text(errors="replace") if path.exists() else ""
        assert subreaper.poll() is None, f"the bench ended before running:\n{said}"
        assert time.monotonic() < give_up, f"the bench was not running:\n{said}"
        time.sleep(0.1)


def _ports(work: Path) -> list[int]:
    return [int(port) for name in ("bank", "ceiling", "echo")
            for port in (work / f"{name}.ports").read_text().split()]  # fmt: skip


def _reaped(path: Path) -> dict[int, int]:
    lines = path.read_text().splitlines() if path.exists() else []
    return {int(pid): int(code) for pid, code in (line.split() for line in lines)}


def test_the_servers_of_a_bench_killed_with_sigkill_stop_cleanly(tmp_path: Path) -> None:
    work = tmp_path / "work"
    bench = [
        sys.executable, "-m", "cli.main", "bench", "authorize", "--spawn", "--ceiling",
        "--workdir", str(work), "--workers", "2", "--rate", "2", "--duration", "60",
        "--no-warmup", "--cardholders", "4",
    ]  # fmt: skip
    work.mkdir()
    env = {**os.environ, "SETPAY_LEDGER_SERVICE": "1"}
    subreaper = subprocess.Popen(
        [sys.executable, "-c", _SUBREAPER, str(tmp_path), *bench], env=env, start_new_session=True
    )
    servers: dict[int, str] = {}
    left: list[int] = []
    try:
        _wait_for(tmp_path / "bench.out", RUNNING, subreaper)
        bench_pid = int((tmp_path / "bench.pid").read_text())
        for root in descendants([bench_pid]):
            command = _cmdline(root)
            if " serve " in command and root not in left:
                servers[root] = command
                left += [pid for pid in descendants([root]) if pid not in left]
        banks = [root for root, command in servers.items() if "gateway serve" in command]
        assert len(servers) == 3 and len(banks) == 1, servers
        # The bank's supervisor, two workers and the ledger process; two workers each for
        # the ceiling and the echo.
        assert len(descendants(banks)) == 4
        assert PROCESS_NAME in [_comm(pid) for pid in descendants(banks)]
        assert len(left) == 10
        ports = _ports(work)
        assert all(_listening(port) for port in ports)

        os.kill(bench_pid, signal.SIGKILL)

        # Before, the servers served on, on their ports, their parent's pid now the
        # subreaper's: the bank's workers and its ledger process, children of a supervisor
        # that was still there, never knew.
        assert gone(left, STOPPED_SECONDS), "the bench's servers outlived it"
        assert not any(_listening(port) for port in ports)
        subreaper.wait(STOPPED_SECONDS)
        ended = _reaped(tmp_path / "reaped")
        # Each stopped as SIGTERM stops it, and said so: none was killed, none failed.
        assert {root: ended.get(root) for root in servers} == dict.fromkeys(servers, 0)
        log = (work / "bank.log").read_text()
        assert "the process that started the bank is gone" in log
    finally:
        kill_left(left)
        if subreaper.poll() is None:
            subreaper.kill()
            subreaper.wait()


def test_a_served_bank_has_no_lifeline_unless_given_one() -> None:
    args = build_parser().parse_args(["gateway", "serve"])
    assert args.lifeline_fd is None


@pytest.mark.parametrize("what", ["closed", "a file"])
def test_a_lifeline_that_is_no_open_pipe_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    with (tmp_path / "file").open("w") as file:
        if what == "closed":
            read, write = os.pipe()
            os.close(read)
            os.close(write)
            fd = read
        else:
            fd = file.fileno()
        args = build_parser().parse_args(
            ["gateway", "serve", "--config", str(tmp_path / "none.toml"), "--lifeline-fd", str(fd)]
        )
        assert gateway.run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("setpay gateway: --lifeline-fd: descriptor")
    assert "Traceback" not in err


def test_the_supervisor_takes_its_lifeline_s_end_as_a_stop_request() -> None:
    read, write = os.pipe()
    signals = SupervisorSignals(open_lifeline(read))
    selector = selectors.DefaultSelector()
    try:
        signals.catch()
        signals.watch(selector, "wake")
        assert len(selector.get_map()) == 2
        os.write(write, b"x")  # nothing is meant to be written: read and dropped
        signals.drain()
        assert not signals.stop_requested
        os.close(write)
        assert [key.data for key, _ in selector.select(5.0)] == ["wake"]
        signals.drain()
        assert signals.stop_requested and signals.new_request()
        assert len(selector.get_map()) == 1  # at its end it is watched no more
        assert selector.select(0.1) == []
    finally:
        selector.close()
        signals.close()
    with pytest.raises(OSError):
        os.fstat(read)  # closed with the rest


def test_a_stop_watcher_hears_its_lifeline_s_end_as_a_stop() -> None:
    read, write = os.pipe()
    stopped = threading.Event()
    watcher = StopWatcher((signal.SIGTERM,), stopped.set, lifeline=open_lifeline(read))
    try:
        os.write(write, b"x")
        assert not stopped.wait(0.3)
        os.close(write)
        assert stopped.wait(5.0)
        watcher.wait()
    finally:
        watcher.close()
        os.close(read)
