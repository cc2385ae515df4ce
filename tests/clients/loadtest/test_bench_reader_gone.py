"""``setpay bench ... | head``: a run whose standard output's reader is gone still writes
its --json and --plot reports (before, it flushed the text first, and the BrokenPipeError
lost them), and ends quietly (not "setpay bench: [Errno 32] Broken pipe", exit 1).

Its exit status is the run's whenever a script has the run's answer without the text: a
run that failed or is in doubt (1, 3), a clean one that wrote its --json report (0), a
--json or --plot file that could not be written (1). Only a clean run whose text was its
only output, lost, ends as cut off (141, as ``setpay ca list | head -1``). However long
the text, and buffered or not (the image runs unbuffered): one past the pipe's buffer
(64 KB on Linux) broke only at a later write, or, unbuffered, lost its end silently."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

import pytest

from cli import bench as cli_bench
from cli import bench_compare, hardening
from cli import main as cli_main
from clients.loadtest import compare
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.errors import BenchError
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import SCHEMA, to_json, to_text, write_json
from clients.loadtest.tally import Latency, Tally

READER_GONE = 128 + signal.SIGPIPE
# Steps of a sweep whose text is over twice the pipe's buffer (64 KB on Linux).
LONG_SWEEP = 400
PIPE_BUFFER = 64 * 1024
# Where the bench draws its plot (``cli.bench_files``), taken out of the tests.
PLOT = "cli.bench_files.plot"
# What the reader that leaves midway reads first, as ``head -c 100`` does.
HEAD_BYTES = 100


def _result(*, errors: int = 0, steps: int = 1) -> BenchResult:
    """A sweep of ``steps`` open loops from 100/s; clean without ``errors``."""
    rates = tuple(100.0 + n for n in range(steps))
    result = BenchResult({}, Plan(duration=1.0, rates=rates))
    for rate in rates:
        counted = Tally(
            target="gateway", shape=f"open loop {rate:g}/s", offered_rate=rate, duration=1.0,
            sent=100, ok=100 - errors, errors=errors, timeouts=0, throughput=100.0,
            latency=Latency(p50=2.0, p90=3.0, p99=4.0, p999=5.0, max=6.0, mean=2.5),
            client_cpu_seconds=0.1, server_cpu_seconds=None, max_in_flight=4,
            send_lag_max_ms=0.0, exhausted=False,
        )  # fmt: skip
        result.steps.append(StepResult(OpenLoop(rate, 1.0), {Service.GATEWAY: counted}))
    return result


def _args(json_path: Path | None = None, plot_path: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(json=json_path, plot=plot_path)


def _stdout(fd: int, *, buffered: bool) -> TextIO:
    """Standard output on ``fd`` as Python makes it: buffered, or unbuffered (``-u``,
    ``PYTHONUNBUFFERED``: straight to the file, no binary buffer)."""
    if buffered:
        return os.fdopen(fd, "w", closefd=False)
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True)


def _reader_gone(pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch, buffered: bool) -> None:
    # In the test itself: pytest puts its own capture back after the fixtures.
    monkeypatch.setattr(sys, "stdout", _stdout(pipe["write"], buffered=buffered))
    os.close(pipe.pop("read"))


def _setpay_bench(
    monkeypatch: pytest.MonkeyPatch, args: argparse.Namespace, result: BenchResult
) -> int:
    """``setpay bench authorize`` as ``cli.main`` runs it, from the run's end: the report
    of ``result`` as ``args`` asks for it; the program's exit status."""

    def authorize(_: argparse.Namespace) -> int:
        return cli_bench._report(args, result)

    def command(*_: object) -> int:
        return cli_bench.run(argparse.Namespace(bench_handler=authorize))

    monkeypatch.setattr(cli_main, "_run", command)
    return cli_main.main()


def test_a_long_sweep_s_text_is_longer_than_the_pipe_s_buffer() -> None:
    assert len(to_text(_result(steps=LONG_SWEEP)).encode()) > 2 * PIPE_BUFFER


@pytest.mark.parametrize("buffered", [True, False])
def test_the_reports_are_written_before_the_text(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, buffered: bool
) -> None:
    drawn: list[Path] = []
    monkeypatch.setattr(PLOT, lambda result, path: drawn.append(path))
    _reader_gone(pipe, monkeypatch, buffered)
    args = _args(tmp_path / "report.json", tmp_path / "latency.png")
    assert _setpay_bench(monkeypatch, args, _result()) == 0
    document = json.loads(args.json.read_text())
    assert document["schema"] == SCHEMA
    assert document["steps"][0]["results"]["gateway"]["ok"] == 100
    assert drawn == [args.plot]
    assert os.path.samestat(os.fstat(pipe["write"]), os.stat(os.devnull))


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("steps", [1, LONG_SWEEP])
def test_a_clean_run_that_wrote_its_json_report_exits_0_when_the_reader_is_gone(
    pipe: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    buffered: bool,
    steps: int,
) -> None:
    """The script has the run's answer in the file: 0, not 141, whatever the text's
    length (a short one broke at main's last flush, a long one at the bench's write)."""
    _reader_gone(pipe, monkeypatch, buffered)
    args = _args(tmp_path / "report.json")
    assert _setpay_bench(monkeypatch, args, _result(steps=steps)) == 0
    assert len(json.loads(args.json.read_text())["steps"]) == steps
    assert capfd.readouterr().err == ""  # quietly


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("plotted", [False, True])
def test_a_clean_run_whose_text_alone_was_lost_ends_as_cut_off(
    pipe: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    buffered: bool,
    plotted: bool,
) -> None:
    """No --json: the text was the run's answer, and it is lost (a plot says nothing of
    the run's doubts): 141, as any command cut off."""
    monkeypatch.setattr(PLOT, lambda result, path: None)
    _reader_gone(pipe, monkeypatch, buffered)
    args = _args(plot_path=tmp_path / "latency.png" if plotted else None)
    assert _setpay_bench(monkeypatch, args, _result(steps=LONG_SWEEP)) == READER_GONE
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("steps", [1, LONG_SWEEP])
def test_a_run_not_clean_keeps_its_status_when_the_reader_is_gone(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch, buffered: bool, steps: int
) -> None:
    """The write of the text itself breaks (unbuffered, as in the image, or a text past
    the pipe's buffer): the run's 3 stands, never main's 141 for a run cut off."""
    _reader_gone(pipe, monkeypatch, buffered)
    result = _result(errors=1, steps=steps)
    assert _setpay_bench(monkeypatch, _args(), result) == cli_bench.EXIT_NOT_CLEAN


@pytest.mark.parametrize("buffered", [True, False])
def test_a_json_report_that_could_not_be_written_is_a_failure_not_a_cut_off(
    pipe: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    buffered: bool,
) -> None:
    """A clean run whose --json failed: 1 and why, not 141 (the broken pipe of the text
    written after it took the failure's place)."""
    _reader_gone(pipe, monkeypatch, buffered)
    args = _args(tmp_path / "absent" / "report.json")
    assert _setpay_bench(monkeypatch, args, _result(steps=LONG_SWEEP)) == cli_bench.EXIT_FAILED
    assert "setpay bench: " in capfd.readouterr().err


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize(("with_json", "status"), [(False, READER_GONE), (True, 0)])
def test_a_reader_that_leaves_midway_through_a_long_text(
    pipe: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    buffered: bool,
    with_json: bool,
    status: int,
) -> None:
    """``| head -c 100``: the reader takes the first bytes and goes while the bench is
    still writing. Unbuffered, one write of the whole text returned short and the rest
    was dropped without an error: exit 0, the text lost, even without --json."""
    monkeypatch.setattr(sys, "stdout", _stdout(pipe["write"], buffered=buffered))
    reader = _head(pipe.pop("read"))
    args = _args(tmp_path / "report.json" if with_json else None)
    try:
        assert _setpay_bench(monkeypatch, args, _result(steps=LONG_SWEEP)) == status
    finally:
        reader.join()


def test_the_text_is_written_even_when_a_report_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(tmp_path / "absent" / "report.json")
    with pytest.raises(BenchError, match=r"--json: could not write .*report\.json"):
        cli_bench._report(args, _result())
    assert "open loop 100/s" in capsys.readouterr().out


def test_the_bench_leaves_a_broken_pipe_to_main() -> None:
    def breaks(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        cli_bench.run(argparse.Namespace(bench_handler=breaks))


def _head(read_end: int) -> threading.Thread:
    """``| head -c 100`` at ``read_end``, started: it reads the first bytes and goes."""

    def head() -> None:
        os.read(read_end, HEAD_BYTES)
        os.close(read_end)

    reader = threading.Thread(target=head, daemon=True)
    reader.start()
    return reader


# Bounds the wait for a report's reader, in case the bench never opened the report.
READER_SECONDS = 30
# Runs of one report that compare lists side by side: each figure's line then names every
# run's value, and the text is over twice the pipe's buffer.
COMPARED_RUNS = 8000


@pytest.mark.parametrize("buffered", [True, False])
def test_compare_s_long_text_ends_as_cut_off_when_its_reader_leaves_midway(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, buffered: bool
) -> None:
    """``setpay bench compare ... | head -c 100``: unbuffered, one write of the whole text
    returned short and the rest was dropped without an error: exit 0, the text lost."""
    report = tmp_path / "run.json"
    write_json(_result(), report)
    args = argparse.Namespace(
        bench_handler=bench_compare.compare_reports, reports=[report] * COMPARED_RUNS, group=[]
    )
    runs = [compare.read_run(report)] * COMPARED_RUNS
    assert len(compare.to_text([compare.Group("reports", runs)]).encode()) > 2 * PIPE_BUFFER
    monkeypatch.setattr(sys, "stdout", _stdout(pipe["write"], buffered=buffered))
    reader = _head(pipe.pop("read"))
    monkeypatch.setattr(cli_main, "_run", lambda *_: cli_bench.run(args))
    try:
        assert cli_main.main() == READER_GONE
    finally:
        reader.join()


@pytest.mark.parametrize("buffered", [True, False])
def test_a_json_report_into_a_pipe_whose_reader_leaves_is_a_failure_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    buffered: bool,
) -> None:
    """``--json >(head -c 100)``: the report's broken pipe is not standard output's, whose
    reader is still there. A traceback before (main raised it again); now the report that
    could not be written, 1, named by its option."""
    monkeypatch.setattr(hardening, "harden_process", lambda env: None)
    result = _result(steps=LONG_SWEEP)
    assert len(json.dumps(to_json(result), indent=2).encode()) > 2 * PIPE_BUFFER
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)

    def head() -> None:
        # Its open waits for the writer, the bench's report: the shell's ``>(head)``.
        read_end = os.open(fifo, os.O_RDONLY)
        os.read(read_end, HEAD_BYTES)
        os.close(read_end)

    reader = threading.Thread(target=head, daemon=True)
    reader.start()
    status = _setpay_bench(monkeypatch, _args(fifo), result)
    reader.join(timeout=READER_SECONDS)
    assert status == cli_bench.EXIT_FAILED
    err = capfd.readouterr().err
    assert f"setpay bench: --json: could not write {fifo}" in err, err
    assert "Traceback" not in err


def test_a_json_report_that_could_not_be_written_leaves_no_earlier_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An earlier run's plot must not pass for this run's, whose verdict was never written
    (as a failed run's reports: a JSON saying so, and no plot)."""
    earlier = tmp_path / "latency.png"
    earlier.write_bytes(b"an earlier run's plot")
    args = _args(tmp_path / "absent" / "report.json", earlier)
    report = argparse.Namespace(bench_handler=lambda _: cli_bench._report(args, _result()))
    assert cli_bench.run(report) == cli_bench.EXIT_FAILED
    assert not earlier.exists()
    assert "report.json" in capsys.readouterr().err
