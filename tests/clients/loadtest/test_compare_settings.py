"""``setpay bench compare`` names a group whose runs measured different settings, a group
on another machine than the first, and keeps a closed loop that was not clean out of the
undoubted ratio."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cli import bench as cli_bench
from clients.loadtest import compare
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import write_json
from clients.loadtest.tally import Latency, Tally

from .conftest import run_bench

MACHINE = {"cores": 2, "cpu": "AMD EPYC", "kernel": "6.1", "python": "3.11.7"}


def _tally(service: Service, throughput: float, timeouts: int = 0) -> Tally:
    sent = int(throughput * 10)
    return Tally(
        target=str(service), shape="closed loop x32", offered_rate=None, duration=10.0,
        sent=sent, ok=sent - timeouts, errors=0, timeouts=timeouts, throughput=throughput,
        latency=Latency(1.0, 5.0, 9.0, 9.0, 9.0, 2.0), client_cpu_seconds=1.0,
        server_cpu_seconds=1.0, max_in_flight=32, send_lag_max_ms=0.0, exhausted=False,
    )  # fmt: skip


def _report(
    path: Path,
    gateway: float,
    *,
    workers: int = 2,
    duration: float = 10.0,
    machine: dict[str, Any] | None = None,
    loop_ms: float = 20.0,
    timeouts: int = 0,
) -> Path:
    """A closed loop against the gateway and the ceiling (at 1,000/s), its setting as
    ``cli.bench`` writes one, the reference loop read at ``loop_ms``."""
    described = {**(machine or MACHINE), cli_bench.BEFORE: loop_ms, cli_bench.AFTER: loop_ms}
    setting = {"profile": "ec", "workers": workers, "machine": described}
    tallies = {
        Service.GATEWAY: _tally(Service.GATEWAY, gateway, timeouts),
        Service.CEILING: _tally(Service.CEILING, 1000.0),
    }
    step = StepResult(ClosedLoop(concurrency=32, duration=duration), tallies)
    plan = Plan(duration=duration, concurrency=32)
    write_json(BenchResult(setting=setting, plan=plan, steps=[step]), path)
    return path


def _group(label: str, *paths: Path) -> compare.Group:
    return compare.Group(label, [compare.read_run(path) for path in paths])


def test_a_group_of_runs_of_different_settings_is_named_mixed(tmp_path: Path) -> None:
    other = {**MACHINE, "cores": 8, "cpu": "Intel Xeon"}
    group = _group(
        "mixed",
        _report(tmp_path / "a.json", 700.0, workers=1),
        _report(tmp_path / "b.json", 800.0, workers=2, duration=5.0),
        _report(tmp_path / "c.json", 2500.0, workers=1, machine=other),
    )
    text = compare.to_text([group])
    assert (
        "  MIXED: its runs differ in workers 1, 2; machine cores 2, 8; machine cpu AMD EPYC, "
        "Intel Xeon; plan duration_s 10.0, 5.0: each median below is over runs of different "
        "settings\n"
    ) in text
    # Named, the medians are still given (the reader decides).
    assert re.search(r"gateway closed-loop answers/s\s+800.00\s+\(700, 800, 2,500\)", text)


def test_runs_of_one_setting_are_not_named_mixed_whatever_their_readings(tmp_path: Path) -> None:
    # The reference loop timed before and after each run is a reading, not its setting.
    group = _group(
        "one",
        _report(tmp_path / "a.json", 700.0, loop_ms=17.5),
        _report(tmp_path / "b.json", 800.0, loop_ms=31.0),
    )
    text = compare.to_text([group])
    assert "MIXED" not in text and "MACHINE" not in text


def test_a_group_on_another_machine_than_the_first_is_named_beside_its_multiples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = [_report(tmp_path / f"w1-{n}.json", 700.0, workers=1) for n in range(2)]
    same = [_report(tmp_path / f"w2-{n}.json", 1000.0, workers=2) for n in range(2)]
    other = {**MACHINE, "cores": 8, "python": "3.12.1"}
    elsewhere = [_report(tmp_path / "x.json", 2100.0, workers=2, machine=other)]
    argv = ["compare", "--group", "w1", *map(str, first), "--group", "w2", *map(str, same)]
    assert run_bench([*argv, "--group", "big", *map(str, elsewhere)]) == 0
    text = capsys.readouterr().out
    # Workers differ between groups by design: that is what is compared. The machine too
    # is compared when it differs, and the reader is told.
    assert text.count("MACHINE") == 1 and "MIXED" not in text
    assert (
        "big: median of 1 (x.json)\n  MACHINE: its runs and w1's differ in machine cores 8 "
        "against 2; machine python 3.12.1 against 3.11.7: its multiples of w1 compare the "
        "machines too\n"
    ) in text


def test_a_closed_loop_with_timeouts_is_left_out_of_the_undoubted_ratio(tmp_path: Path) -> None:
    # Forty callers' calls waited out their deadline: the gateway's rate, and the ratio,
    # are bent low, and the bench exited 3 for it.
    group = _group(
        "runs",
        _report(tmp_path / "t.json", 500.0, timeouts=40),
        _report(tmp_path / "a.json", 700.0),
        _report(tmp_path / "b.json", 800.0),
    )
    timed_out = group.runs[0]
    assert timed_out.doubted and not timed_out.clean
    text = compare.to_text([group])
    assert re.search(r"gateway / ceiling\s+0.700\s+\(0.500, 0.700, 0.800\)\n", text)
    assert re.search(
        r"gateway / ceiling, undoubted runs\s+0.750\s+\(0.700, 0.800: 2 of 3 runs\)\n", text
    )


def test_the_readings_compare_leaves_out_are_the_ones_the_bench_writes() -> None:
    assert {cli_bench.BEFORE, cli_bench.AFTER} == compare.READINGS


def test_a_setting_is_shown_as_text_a_terminal_does_not_act_on(tmp_path: Path) -> None:
    group = _group(
        "odd",
        _report(tmp_path / "a.json", 700.0, machine={**MACHINE, "cpu": "AMD\x1b[2J EPYC"}),
        _report(tmp_path / "b.json", 800.0, machine={**MACHINE, "cpu": "x" * 100}),
    )
    (mixed,) = compare.differences(group.runs)
    assert mixed == f'machine cpu "AMD\\u001b[2J EPYC", {"x" * 57}...'
