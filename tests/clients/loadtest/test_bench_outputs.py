"""``setpay bench authorize`` refuses, before it starts anything, a report it could not
write once the run is over: a missing directory, a plot without open-loop steps, a plot
without matplotlib. Each refusal leaves no bank behind (its ``--workdir`` never made)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.plot import DPI, FIGURE_INCHES, plot
from clients.loadtest.tally import Latency, Tally

from .conftest import png_size, run_bench


def _refused(tmp_path: Path, status: int, *options: str) -> None:
    workdir = tmp_path / "bank"
    code = run_bench(["authorize", "--spawn", "--workdir", str(workdir), *options])
    assert code == status  # 2: the options make no runnable plan; 1: this machine cannot
    assert not workdir.exists()  # nothing was started


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_a_report_into_a_missing_directory_is_refused_at_once(
    tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(tmp_path, 1, "--rate", "5", option, str(tmp_path / "absent" / "report"))
    assert f"{option}: cannot write report in" in capsys.readouterr().err


def test_a_plot_of_a_closed_loop_alone_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(tmp_path, 2, "--concurrency", "4", "--plot", str(tmp_path / "latency.png"))
    assert "--plot needs open-loop steps" in capsys.readouterr().err


def test_a_plot_without_matplotlib_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    _refused(tmp_path, 1, "--rate", "5", "--plot", str(tmp_path / "latency.png"))
    assert "--plot needs matplotlib" in capsys.readouterr().err


def _tally(service: Service, rate: float, p50: float) -> Tally:
    sent = int(rate * 10)
    return Tally(
        target=str(service), shape=f"open loop {rate:g}/s", offered_rate=rate, duration=10.0,
        sent=sent, ok=sent, errors=0, timeouts=0, throughput=rate,
        latency=Latency(p50=p50, p90=2 * p50, p99=4 * p50, p999=5 * p50, max=6 * p50, mean=p50),
        client_cpu_seconds=1.0, server_cpu_seconds=None, max_in_flight=8,
        send_lag_max_ms=0.0, exhausted=False,
    )  # fmt: skip


def test_a_sweep_is_drawn(tmp_path: Path) -> None:
    result = BenchResult({}, Plan(duration=10.0, rates=(100.0, 200.0, 400.0)))
    for rate, p50 in ((100.0, 2.0), (200.0, 3.0), (400.0, 40.0)):
        tallies = {
            Service.GATEWAY: _tally(Service.GATEWAY, rate, p50),
            Service.CEILING: _tally(Service.CEILING, rate, p50 / 4),
        }
        result.steps.append(StepResult(OpenLoop(rate, 10.0), tallies))
    path = tmp_path / "sweep.png"
    plot(result, path)
    expected = (round(FIGURE_INCHES[0] * DPI), round(FIGURE_INCHES[1] * DPI))
    assert png_size(path.read_bytes()) == expected
