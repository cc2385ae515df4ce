"""Every DOUBT counts: in the exit status, beside the sustained rate, in the sweep, and for
a ledger kept in memory; and the plot marks the points that are not what they seem."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import pytest

from cli import bench as cli_bench
from cli.bench_ledger import memory_ledger_doubt
from clients.loadtest import machine
from clients.loadtest import plot as plot_module
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import to_json, to_text
from clients.loadtest.tally import Latency, Tally

P99_MAX = 50.0


def _tally(
    rate: float,
    p99: float,
    *,
    lag_ms: float = 0.0,
    doubts: tuple[str, ...] = (),
    timeouts: int = 0,
    sent: int = 1000,
) -> Tally:
    return Tally(
        target="gateway", shape="x", offered_rate=rate, duration=10.0, sent=sent,
        ok=sent - timeouts, errors=0, timeouts=timeouts, throughput=rate,
        latency=Latency(p99 / 4, p99 / 2, p99, p99, p99, p99 / 4, sent),
        client_cpu_seconds=1.0, server_cpu_seconds=None, max_in_flight=8,
        send_lag_max_ms=lag_ms, exhausted=False, send_lag_p99_ms=lag_ms,
        accounting_doubts=doubts,
    )  # fmt: skip


def _sweep(*runs: Tally) -> BenchResult:
    rates = tuple(t.offered_rate or 0.0 for t in runs)
    result = BenchResult({}, Plan(duration=10.0, rates=rates, p99_max_ms=P99_MAX))
    for counted in runs:
        shape = OpenLoop(counted.offered_rate or 0.0, 10.0)
        result.steps.append(StepResult(shape, {Service.GATEWAY: counted}))
    return result


def _exit(result: BenchResult) -> int:
    return cli_bench._report(argparse.Namespace(json=None, plot=None), result)


@pytest.mark.parametrize("passed_first", [True, False])
def test_a_rate_run_twice_is_sustained_only_if_neither_run_failed(passed_first: bool) -> None:
    runs = [_tally(400.0, 20.0), _tally(400.0, P99_MAX * 2)]
    result = _sweep(_tally(200.0, 10.0), *(runs if passed_first else runs[::-1]))
    assert result.sustained() == 200.0
    assert result.sweep_doubts() == [
        "the gateway passed at 400/s after failing at 400/s: the sustained rate stops below "
        "the failure; repeat the sweep"
    ]
    assert _exit(result) == cli_bench.EXIT_NOT_CLEAN


def test_a_rate_whose_requests_the_bank_could_not_check_is_not_sustained() -> None:
    result = _sweep(_tally(200.0, 10.0), _tally(400.0, 10.0, doubts=("the bank was busy",)))
    assert result.sustained() == 200.0
    assert to_json(result)["sustained_rate"] == {"gateway": 200.0}


def test_a_step_doubt_changes_the_exit_status_and_stands_beside_the_sustained_rate() -> None:
    # The bench sent a tenth of the p99 bound late at its p99: the p99 is partly its own.
    result = _sweep(_tally(200.0, 10.0, lag_ms=P99_MAX * 0.2))
    assert result.steps[0].tallies[Service.GATEWAY].clean
    document = to_json(result)
    (doubt,) = document["doubts"]
    assert doubt.startswith("open loop 200/s: the bench sent to the gateway 10.0 ms late")
    keys = list(document)
    assert keys.index("doubts") == keys.index("sustained_rate") + 1
    assert _exit(result) == cli_bench.EXIT_NOT_CLEAN
    assert _exit(_sweep(_tally(200.0, 10.0))) == 0


def test_a_ledger_in_memory_the_bench_chose_is_doubted() -> None:
    (doubt,) = memory_ledger_doubt("tmpfs", chosen=False)
    assert "ledger is on tmpfs" in doubt and "--workdir" in doubt
    assert memory_ledger_doubt("ramfs", chosen=False)
    assert memory_ledger_doubt("tmpfs", chosen=True) == []  # --workdir there: on purpose
    assert memory_ledger_doubt("ext4", chosen=False) == []
    result = _sweep(_tally(200.0, 10.0))
    result.setting["ledger filesystem"] = "tmpfs"
    result.doubts = [doubt]
    assert "ledger filesystem tmpfs" in to_text(result)
    assert f"  DOUBT: {doubt}" in to_text(result)
    assert to_json(result)["doubts"] == [doubt]
    assert _exit(result) == cli_bench.EXIT_NOT_CLEAN


def test_the_filesystem_of_a_path_is_its_deepest_mount_s(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "30 22 0:26 / /srv/fast rw,nosuid shared:5 - tmpfs tmpfs rw,size=100k\n"
        "31 22 0:27 / /srv/fast\\040two rw shared:6 - ramfs none rw\n"
        "32 30 8:2 / /srv/fast/disk rw shared:7 - xfs /dev/sdb1 rw\n"
    )
    assert machine.filesystem_of(Path("/srv/fast/bank/ledger"), proc) == "tmpfs"
    assert machine.filesystem_of(Path("/srv/fast two/bank"), proc) == "ramfs"
    assert machine.filesystem_of(Path("/srv/fast/disk/bank"), proc) == "xfs"
    assert machine.filesystem_of(Path("/srv/faster"), proc) == "ext4"
    assert machine.filesystem_of(Path("/srv"), tmp_path / "nowhere") is None


def test_the_plot_draws_a_p99_9_of_few_samples_and_a_shedding_rate_hollow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make test installs the plot extra: a missing matplotlib fails here, never skips.
    pyplot = importlib.import_module("matplotlib.pyplot")
    kept: list[Any] = []
    monkeypatch.setattr(pyplot, "close", kept.append)  # keep the figure to look at
    result = _sweep(
        _tally(100.0, 10.0, sent=2000),  # a p99.9 of 2,000 requests: a percentile
        _tally(200.0, 10.0, sent=500),  # of 500: their maximum
        _tally(400.0, 10.0, sent=4000, timeouts=3),  # shed calls
    )
    plot_module.plot(result, tmp_path / "latency.png")
    (figure,) = kept
    axes = figure.axes[0]
    hollow: dict[str, list[float]] = {}
    for line in axes.get_lines():
        if line.get_marker() == "o" and line.get_markerfacecolor() == "none":
            colour = line.get_color()
            hollow.setdefault(colour, []).extend(line.get_xdata())
    # p99.9 (C3) hollow at 200/s and 400/s, the others at 400/s alone.
    assert sorted(hollow.pop("C3")) == [200.0, 400.0]
    assert all(rates == [400.0] for colour, rates in hollow.items() if colour != "grey")
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any(label.startswith("hollow: shed calls") for label in labels), labels
    monkeypatch.undo()
    pyplot.close(figure)
