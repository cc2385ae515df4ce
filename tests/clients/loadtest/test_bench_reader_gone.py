"""``setpay bench ... | head``: a run whose standard output's reader is gone still writes
its --json and --plot reports (it flushed the text first, and the BrokenPipeError lost
them), and leaves the broken pipe to ``cli.main``, which ends quietly (not "setpay bench:
[Errno 32] Broken pipe", exit 1)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from cli import bench as cli_bench
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import SCHEMA
from clients.loadtest.tally import Latency, Tally


class _GoneReader:
    """Standard output whose reader has gone: every write or flush breaks."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def _result(errors: int = 0) -> BenchResult:
    counted = Tally(
        target="gateway", shape="open loop 100/s", offered_rate=100.0, duration=1.0,
        sent=100, ok=100 - errors, errors=errors, timeouts=0, throughput=100.0,
        latency=Latency(p50=2.0, p90=3.0, p99=4.0, p999=5.0, max=6.0, mean=2.5),
        client_cpu_seconds=0.1, server_cpu_seconds=None, max_in_flight=4,
        send_lag_max_ms=0.0, exhausted=False,
    )  # fmt: skip
    result = BenchResult({}, Plan(duration=1.0, rates=(100.0,)))
    result.steps.append(StepResult(OpenLoop(100.0, 1.0), {Service.GATEWAY: counted}))
    return result


def test_the_reports_are_written_before_the_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[Path] = []
    monkeypatch.setattr(cli_bench, "plot", lambda result, path: drawn.append(path))
    monkeypatch.setattr(sys, "stdout", _GoneReader())
    args = argparse.Namespace(json=tmp_path / "report.json", plot=tmp_path / "latency.png")
    with pytest.raises(BrokenPipeError):
        cli_bench._report(args, _result())
    document = json.loads(args.json.read_text())
    assert document["schema"] == SCHEMA
    assert document["steps"][0]["results"]["gateway"]["ok"] == 100
    assert drawn == [args.plot]


def test_a_run_not_clean_keeps_its_status_when_the_reader_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The write of the text itself breaks (unbuffered, as in the image, or a text past
    the pipe's buffer): the run's 3 stands, never main's 141 for a run cut off."""
    monkeypatch.setattr(sys, "stdout", _GoneReader())
    args = argparse.Namespace(json=None, plot=None)
    assert cli_bench._report(args, _result(errors=1)) == cli_bench.EXIT_NOT_CLEAN


def test_the_text_is_written_even_when_a_report_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(json=tmp_path / "absent" / "report.json", plot=None)
    with pytest.raises(FileNotFoundError):
        cli_bench._report(args, _result())
    assert "open loop 100/s" in capsys.readouterr().out


def test_the_bench_leaves_a_broken_pipe_to_main() -> None:
    def breaks(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        cli_bench.run(argparse.Namespace(bench_handler=breaks))
