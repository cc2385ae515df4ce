"""``setpay bench authorize`` refuses, before it starts anything, a report it could not
write once the run is over: a missing directory, a plot without open-loop steps, a plot
without matplotlib. Each refusal leaves no bank behind (its ``--workdir`` never made)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clients.loadtest import plot as plot_module
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.plot import DPI, FIGURE_INCHES, plot
from clients.loadtest.report import to_json
from clients.loadtest.tally import Latency, Tally

from .conftest import png_size, run_bench


def _refused(tmp_path: Path, status: int, *options: str) -> None:
    workdir = tmp_path / "bank"
    code = run_bench(["authorize", "--spawn", "--workdir", str(workdir), *options])
    assert code == status  # 2: the options ask for what cannot be; 1: this machine cannot
    assert not workdir.exists()  # nothing was started


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_a_report_into_a_missing_directory_is_refused_at_once(
    tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A usage error (2), as a plot without open-loop steps is.
    _refused(tmp_path, 2, "--rate", "5", option, str(tmp_path / "absent" / "report"))
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


def test_a_sweep_that_repeats_a_rate_is_drawn(tmp_path: Path) -> None:
    # ``--rates 200,200`` (or a --load-fraction step landing on a --rates rate): two
    # points at one rate. Sorting them compared their latencies and failed once the run
    # was over, its report printed but its plot not drawn.
    result = BenchResult({}, Plan(duration=10.0, rates=(200.0, 200.0, 100.0)))
    for rate, p50 in ((200.0, 3.0), (200.0, 4.0), (100.0, 2.0)):
        tallies = {Service.GATEWAY: _tally(Service.GATEWAY, rate, p50)}
        result.steps.append(StepResult(OpenLoop(rate, 10.0), tallies))
    path = tmp_path / "sweep.png"
    plot(result, path)
    assert png_size(path.read_bytes())[0] > 0


class _Axes:
    """Records what is drawn."""

    def __init__(self) -> None:
        self.lines: dict[str, tuple[list[float], list[float]]] = {}

    def plot(
        self, xs: list[float], ys: list[float], *_: Any, label: str | None = None, **__: Any
    ) -> None:
        if label is not None:  # a line; its markers are drawn unlabelled, filled or hollow
            self.lines[label] = (list(xs), list(ys))

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _PyPlot:
    def __init__(self) -> None:
        self.axes = _Axes()

    def subplots(self, **_: Any) -> tuple[Any, _Axes]:
        return SimpleNamespace(tight_layout=lambda: None, savefig=lambda *a, **k: None), self.axes

    def close(self, figure: Any) -> None:
        return None


def test_the_plot_draws_the_report_s_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = BenchResult({}, Plan(duration=10.0, rates=(400.0, 100.0, 200.0)))
    for rate, p50 in ((400.0, 40.25), (100.0, 2.125), (200.0, 3.5)):
        tallies = {
            Service.GATEWAY: _tally(Service.GATEWAY, rate, p50),
            Service.ECHO: _tally(Service.ECHO, rate, p50 / 8),
        }
        result.steps.append(StepResult(OpenLoop(rate, 10.0), tallies))
    pyplot = _PyPlot()
    monkeypatch.setattr(plot_module, "_pyplot", lambda: pyplot)
    plot(result, tmp_path / "sweep.png")
    report = to_json(result)
    for service in ("gateway", "echo"):
        results = [step["results"][service] for step in report["steps"]]
        rows = sorted((r["offered_rate"], r["latency_ms"]) for r in results)
        for key in ("p50", "p90", "p99", "p99.9"):
            xs, ys = pyplot.axes.lines[f"{service} {key}"]
            assert xs == [rate for rate, _ in rows]
            assert ys == pytest.approx([latency[key] for _, latency in rows], abs=0.001)
    assert "ceiling p50" not in pyplot.axes.lines


def test_the_json_report_keeps_its_schema() -> None:
    # Machines read these keys, so they are pinned here. A key removed, renamed or given
    # another meaning is a new schema version (compare reads only its own); a key added,
    # as plan.requests and plan.warmup were (and the per-answer CPU, the send lag's
    # percentiles, the latency of the verified answers, the reasons a run is unaccounted
    # for and the sweep's doubts after them, the doubts on a run's accounting, the ledger's
    # holds, whether the bank checked a run, every doubt of the run), leaves every reader
    # of /2 working.
    plan = Plan(duration=10.0, rates=(100.0,), requests=500, warmup=False)
    result = BenchResult({"profile": "ec"}, plan)
    result.steps.append(
        StepResult(OpenLoop(100.0, 10.0), {Service.GATEWAY: _tally(Service.GATEWAY, 100.0, 2.0)})
    )
    report = to_json(result)
    assert report["schema"] == "setpay.bench.authorize/2"
    assert set(report) == {
        "schema", "setting", "plan", "warmup", "steps", "sustained_rate", "sweep_doubts",
        "doubts",
    }  # fmt: skip
    # The plan as it ran, every option that shapes the traffic included.
    assert report["plan"] == {
        "duration_s": 10.0, "rates": [100.0], "concurrency": None, "load_fraction": None,
        "channels": 8, "timeout_s": 5.0, "requests": 500, "warmup": False, "p99_max_ms": 50.0,
    }  # fmt: skip
    (step,) = report["steps"]
    assert set(step) == {"shape", "mode", "results", "ratios", "doubts"}
    assert set(step["results"]["gateway"]) == {
        "target", "shape", "offered_rate", "duration_s", "sent", "ok", "errors", "timeouts",
        "accounted", "clean", "throughput", "latency_ms", "outcomes", "errors_by_grpc_status",
        "errors_by_set_code", "client_cpu_s", "client_cpu_us_per_request", "server_cpu_s",
        "server_cpu_us_per_request", "max_in_flight", "send_lag_max_ms", "ran_out_of_requests",
        "ledger_commits", "worker_calls", "process_cpu_shares", "connections_per_worker",
        "redials", "machine_speed", "unaccounted", "latency_ok_ms", "server_cpu_us_per_answer",
        "send_lag_p50_ms", "send_lag_p99_ms", "late_sends", "accounting_doubts",
        "ledger_holds", "bank_checked",
    }  # fmt: skip
    assert set(step["results"]["gateway"]["latency_ms"]) == {
        "p50", "p90", "p99", "p99.9", "max", "mean", "count", "p99.9_is_max"
    }  # fmt: skip
    assert report["sustained_rate"] == {"gateway": 100.0}
