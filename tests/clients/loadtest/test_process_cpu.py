"""The CPU of each child process of a server the bench started, read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from clients.loadtest import cpu
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import to_json, to_text
from clients.loadtest.tally import Tally

# A child that burns some CPU, then waits to be stopped.
_BURN = "sum(range({n})); import time; time.sleep(60)"


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[bytes]]:
    """A shell with two children, the second burning three times the first's CPU."""
    script = (
        f"{sys.executable} -c '{_BURN.format(n=2_000_000)}' & "
        f"{sys.executable} -c '{_BURN.format(n=6_000_000)}' & wait"
    )
    shell = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        yield shell
    finally:
        os.killpg(shell.pid, signal.SIGKILL)  # the shell leads its children's group
        shell.wait()


def test_each_child_of_a_server_is_read_by_pid(parent: subprocess.Popen[bytes]) -> None:
    probe = cpu.children_cpu(parent.pid)
    deadline = time.monotonic() + 30
    reading = probe()
    while time.monotonic() < deadline:
        reading = probe()
        time.sleep(0.3)
        # Both children started and done burning: their CPU no longer moves.
        if reading and len(reading) == 2 and min(reading.values()) > 0 and reading == probe():
            break
    assert reading is not None and len(reading) == 2
    first, second = (reading[pid] for pid in sorted(reading))
    assert 0 < first < second  # the later child burned more
    shares = cpu.shares_between(dict.fromkeys(reading, 0.0), reading)  # since they started
    assert shares is not None and sum(shares) == pytest.approx(1.0)
    assert shares[0] < shares[1]


def test_a_server_s_cpu_is_its_whole_tree(parent: subprocess.Popen[bytes]) -> None:
    # The server the bench started, and every process below it (its workers).
    children = cpu.children_cpu(parent.pid)
    deadline = time.monotonic() + 30
    reading = children()
    while time.monotonic() < deadline:
        # Both children started and done burning: their CPU no longer moves over 0.3 s
        # (/proc counts in 10 ms ticks, so two reads back to back would nearly always agree).
        previous = reading
        time.sleep(0.3)
        reading = children()
        if reading and len(reading) == 2 and min(reading.values()) > 0 and reading == previous:
            break
    total = cpu.tree_cpu([parent.pid])()
    assert reading is not None and total is not None
    own = cpu.process_cpu_seconds(parent.pid)
    assert total == pytest.approx(own + sum(reading.values()), abs=0.05)
    assert total >= sum(reading.values()) > 0


def test_a_process_without_children_has_none() -> None:
    assert cpu.children_cpu(1 << 22)() == {}  # above any pid this kernel hands out


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({10: 1.0, 11: 2.0}, {10: 2.0, 11: 5.0}, (0.25, 0.75)),
    ],
)
def test_shares_are_of_the_cpu_used_between_the_readings(
    before: dict[int, float], after: dict[int, float], expected: tuple[float, ...]
) -> None:
    assert cpu.shares_between(before, after) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, {10: 1.0, 11: 1.0}),  # not observed before the run
        ({10: 1.0, 11: 1.0}, None),  # ... or after it
        ({10: 1.0}, {10: 2.0}),  # one child: nothing to split
        ({10: 1.0, 11: 1.0}, {10: 1.0, 11: 1.0}),  # no CPU used
    ],
)
def test_no_shares_without_two_readings_of_two_busy_children(
    before: dict[int, float] | None, after: dict[int, float] | None
) -> None:
    assert cpu.shares_between(before, after) is None


def _result(shares: tuple[float, ...] | None) -> BenchResult:
    tally = Tally(
        target="ceiling", shape="closed loop x32", offered_rate=None, duration=10.0,
        sent=9000, ok=9000, errors=0, timeouts=0, throughput=900.0, latency=None,
        client_cpu_seconds=2.0, server_cpu_seconds=9.0, max_in_flight=32,
        send_lag_max_ms=0.0, exhausted=False, outcomes={"approved": 9000},
        process_cpu_shares=shares,
    )  # fmt: skip
    step = StepResult(ClosedLoop(32, 10.0), {Service.CEILING: tally})
    return BenchResult(setting={}, plan=Plan(duration=10.0, concurrency=32), steps=[step])


def test_the_report_shows_each_child_s_part_of_the_cpu() -> None:
    result = _result((0.48, 0.52))
    assert "    ceiling CPU per child process: 48% / 52%\n" in to_text(result)
    ceiling = to_json(result)["steps"][0]["results"]["ceiling"]
    assert ceiling["process_cpu_shares"] == [0.48, 0.52]


def test_a_run_without_shares_says_nothing_of_them() -> None:
    result = _result(None)
    assert "child process" not in to_text(result)
    assert to_json(result)["steps"][0]["results"]["ceiling"]["process_cpu_shares"] is None
