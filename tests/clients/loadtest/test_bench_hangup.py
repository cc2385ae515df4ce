"""A bench hung up on (its terminal closed, an SSH session dropped) stops what it started,
as Ctrl-C and SIGTERM do: the servers it starts are in sessions of their own, which the
hangup does not reach, so only the bench can stop them. Real processes: ``setpay bench
authorize`` in a process of its own, its run played by a server of the test's that starts a
worker of its own, as a bank does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import bench_stop

from .process_support import alive, gone, kill_left

# A server that starts a worker, writes both pids, and says it serves (SIGTERM ends it, its
# worker is left to the group's SIGKILL, as a bank's would be if it did not stop them).
_SERVER = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1], "w") as out:
    out.write(f"{__import__('os').getpid()} {worker.pid}\\n")
with open(sys.argv[2], "w") as out:
    out.write("1\\n")
time.sleep(120)
"""
# ``setpay bench authorize`` whose run starts that server as ``cli.bench`` starts a bank
# (stopped on the way out of the run's ExitStack) and then waits, as a long run does.
_BENCH = """
import contextlib, signal, sys, time
from pathlib import Path
if sys.argv[3] == "nohup":  # as nohup(1) leaves it, before the bench starts
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
from cli import bench, main
from clients.loadtest import spawn
work = Path(sys.argv[1])

def measure(args, plan):
    with contextlib.ExitStack() as stack:
        argv = [sys.executable, "-c", sys.argv[2], str(work / "pids"), str(work / "ports")]
        server = spawn.start("bank", argv, work / "ports", work / "log")
        stack.callback(server.stop)
        print("serving", flush=True)
        time.sleep(120)

bench._measure = measure
sys.exit(main.main(["bench", "authorize", "--spawn", "--rate", "1", "--duration", "1",
                    "--json", str(work / "report.json")]))
"""
# The server's pids, a hung-up bench's end, and its server's: seconds, for a loaded machine.
WAIT_SECONDS = 30.0


def _bench(tmp_path: Path, ignore_hangup: bool = False) -> subprocess.Popen[str]:
    how = "nohup" if ignore_hangup else "terminal"
    with (tmp_path / "stderr").open("w") as stderr:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-c", _BENCH, str(tmp_path), _SERVER, how],
            stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
        )  # fmt: skip


def _serving(bench: subprocess.Popen[str], tmp_path: Path) -> list[int]:
    """The bench's server and its worker, once it says it serves."""
    assert bench.stdout is not None
    said = bench.stdout.readline()
    if said != "serving\n":  # what it said instead, for whoever reads the failure
        bench.wait(WAIT_SECONDS)
        stderr = (tmp_path / "stderr").read_text()
        pytest.fail(f"the bench ended ({bench.returncode}) before serving: {said!r}\n{stderr}")
    pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    return pids


def test_a_hung_up_bench_stops_the_bank_it_started_and_says_so(tmp_path: Path) -> None:
    bench = _bench(tmp_path)
    started: list[int] = []
    try:
        started = _serving(bench, tmp_path)
        bench.send_signal(signal.SIGHUP)
        status = bench.wait(WAIT_SECONDS)
        # Before, Python's own action ended the bench at once (-1: killed by SIGHUP), and
        # the bank it had started served on, on its port.
        assert gone(started, WAIT_SECONDS), "the bench's bank outlived its hangup"
        assert status == 1
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["failed"] == "stopped by SIGHUP"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        kill_left(started)


def test_a_bench_under_nohup_outlives_its_hangup(tmp_path: Path) -> None:
    bench = _bench(tmp_path, ignore_hangup=True)
    started: list[int] = []
    try:
        started = _serving(bench, tmp_path)
        bench.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert bench.poll() is None, "nohup's ignored SIGHUP stopped the bench"
        assert all(alive(pid) for pid in started)
        bench.send_signal(signal.SIGTERM)  # and it still stops what it started
        assert bench.wait(WAIT_SECONDS) == 1
        assert gone(started, WAIT_SECONDS)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        kill_left(started)


@pytest.mark.parametrize(
    ("stop", "said"),
    [
        (bench_stop.Stopped(signal.SIGTERM), "stopped by SIGTERM"),
        (bench_stop.Stopped(signal.SIGHUP), "stopped by SIGHUP"),
        (KeyboardInterrupt(), "interrupted"),
        (SystemExit(1), "stopped"),
        (OSError("disk full"), "disk full"),
    ],
)
def test_a_failed_runs_report_names_what_stopped_it(stop: BaseException, said: str) -> None:
    assert bench_stop.failure(stop) == said
