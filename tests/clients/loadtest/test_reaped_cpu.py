"""A server's CPU counts the processes it has reaped, and a change of its processes
during the bench makes the CPU of the run it fell in unknown, with a DOUBT, never a
negative figure (``cpu.ServerProcesses``, ``cli.bench.changed_processes``).

A worker that ended and was started again mid-run took its CPU out of the reading after
the run: the report said -9,000 us per answer, server CPU -0.9 s, clean, exit 0."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from cli.bench import changed_processes
from clients.loadtest import cpu
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import all_doubts, run_status, to_text
from clients.loadtest.tally import Tally

# CPU seconds a worker burns when told to: far above the 10 ms a clock tick counts.
BURN_SECONDS = 0.3
_BURN = (
    "import sys, time\n"
    f"end = time.process_time() + {BURN_SECONDS}\n"
    "while time.process_time() < end:\n"
    "    pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.readline()\n"
)
# A server: on "run", a worker burns its CPU and is reaped; on "start", a worker burns
# and stays (as a worker serving); on "restart", that worker is stopped, reaped, and a new
# one started in its place. It answers "done" to each line.
_SERVER = f"""
import subprocess, sys
BURN = {_BURN!r}
worker = None
def start():
    started = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    started.stdout.readline()  # it has burnt its CPU
    return started
for line in sys.stdin:
    if line.strip() == "run":
        start().communicate("\\n")
    elif line.strip() == "start":
        worker = start()
    elif line.strip() == "restart":
        worker.communicate("\\n")
        worker = start()
    print("done", flush=True)
"""


class Server:
    """A process tree to read, driven line by line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def tell(self, what: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(what + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "done\n"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def server() -> Iterator[Server]:
    started = Server()
    try:
        yield started
    finally:
        started.stop()


def test_a_worker_that_ended_during_the_run_still_counts(server: Server) -> None:
    # The set of processes is the same at both readings: the worker lived and was reaped
    # between them. Its CPU is its parent's now (cutime, cstime).
    probe = cpu.tree_cpu([server.pid])
    before = probe()
    server.tell("run")
    after = probe()
    assert before is not None and after is not None
    assert after - before >= BURN_SECONDS * 0.8


def test_a_process_counts_the_children_it_reaped(server: Server) -> None:
    own = cpu.process_cpu_seconds(server.pid)
    server.tell("run")
    assert cpu.process_cpu_seconds(server.pid) - own >= BURN_SECONDS * 0.8


def test_a_restarted_worker_makes_the_run_s_cpu_unknown_never_negative(server: Server) -> None:
    server.tell("start")
    probe = cpu.tree_cpu([server.pid])
    before = probe()
    server.tell("restart")  # the old worker's CPU is reaped, the new one burns its start
    after = probe()
    assert before is not None
    assert after is None  # not a figure: the processes changed between the readings
    server.tell("run")
    assert probe() is not None  # the next run, with no change in it, is read again


def test_the_change_is_counted_for_the_doubt(server: Server) -> None:
    server.tell("start")
    processes = cpu.ServerProcesses([server.pid])
    assert processes.child_cpu() is not None and processes.server_cpu() is not None
    assert processes.changes == 0
    server.tell("restart")
    assert processes.server_cpu() is None
    assert processes.child_cpu() is not None  # the same children as the reading before
    assert processes.changes == 1


def test_the_children_s_cpu_after_a_change_is_unknown(server: Server) -> None:
    server.tell("start")
    processes = cpu.ServerProcesses([server.pid])
    before = processes.child_cpu()
    server.tell("restart")
    assert before is not None and len(before) == 1
    assert processes.child_cpu() is None
    assert processes.changes == 1


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # A child ended and another started: the new one's part would be its start.
        ({10: 1.0, 11: 2.0}, {10: 2.0, 12: 1.0}),
        # A child started during the run.
        ({10: 1.0, 11: 2.0}, {10: 2.0, 11: 3.0, 12: 1.0}),
        # A child's CPU went back (another process under its pid): never a negative part.
        ({10: 2.0, 11: 1.0}, {10: 1.0, 11: 3.0}),
    ],
)
def test_no_shares_when_the_children_changed(
    before: dict[int, float], after: dict[int, float]
) -> None:
    assert cpu.shares_between(before, after) is None


def _result(server_cpu: float | None) -> BenchResult:
    tally = Tally(
        target="gateway", shape="open loop 20/s", offered_rate=20.0, duration=5.0, sent=100,
        ok=100, errors=0, timeouts=0, throughput=20.0, latency=None, client_cpu_seconds=0.1,
        server_cpu_seconds=server_cpu, max_in_flight=3, send_lag_max_ms=0.0, exhausted=False,
        outcomes={"approved": 100},
    )  # fmt: skip
    step = StepResult(OpenLoop(20.0, 5.0), {Service.GATEWAY: tally})
    return BenchResult({}, Plan(duration=5.0, rates=(20.0,)), steps=[step])


def test_a_change_is_a_doubt_naming_the_runs_without_cpu() -> None:
    result = _result(None)
    processes = cpu.ServerProcesses([])
    processes.changes = 1
    result.doubts += changed_processes(result, {Service.GATEWAY: processes})
    (doubt,) = all_doubts(result)
    assert doubt.startswith("the gateway's processes changed while the bench read their CPU")
    assert "its server CPU is unknown (-) in open loop 20/s;" in doubt
    assert f"  DOUBT: {doubt}\n" in to_text(result)
    assert run_status(result, failed=1, not_clean=3) == 3
    # The row shows no figure for the server's CPU.
    (row,) = [line for line in to_text(result).splitlines() if line.startswith("  gateway ")]
    assert row.split()[-2:] == ["-", "1,000"]


def test_a_change_between_runs_is_a_doubt_too() -> None:
    result = _result(0.5)
    processes = cpu.ServerProcesses([])
    processes.changes = 1
    (doubt,) = changed_processes(result, {Service.GATEWAY: processes})
    assert "): between runs, its server CPU known; the runs around" in doubt


def test_no_change_no_doubt() -> None:
    result = _result(0.5)
    assert changed_processes(result, {Service.GATEWAY: cpu.ServerProcesses([])}) == []
    assert run_status(result, failed=1, not_clean=3) == 0
