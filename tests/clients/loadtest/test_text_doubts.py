"""The text report prints every DOUBT the exit status counts (``report.all_doubts``): the
setting's, each run's accounting, each step's and the sweep's of every service swept, so
that a run that exits 3 says why where people read it."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

from cli import bench as cli_bench
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import all_doubts, to_json, to_text
from clients.loadtest.report import doubts as step_doubts
from clients.loadtest.tally import Latency, Tally

P99_MAX = 50.0


def _tally(service: Service, rate: float | None, p99: float, *, throughput: float = 100.0,
           accounting_doubts: tuple[str, ...] = ()) -> Tally:  # fmt: skip
    sent = 100
    return Tally(
        target=str(service), shape="x", offered_rate=rate, duration=1.0, sent=sent, ok=sent,
        errors=0, timeouts=0, throughput=throughput,
        latency=Latency(p50=p99 / 4, p90=p99 / 2, p99=p99, p999=p99, max=p99, mean=p99 / 4),
        client_cpu_seconds=0.1, server_cpu_seconds=0.1, max_in_flight=5,
        send_lag_max_ms=0.0, exhausted=False, accounting_doubts=accounting_doubts,
    )  # fmt: skip


def _sweep_with_a_ceiling_doubt() -> BenchResult:
    """The review's case: the gateway passed both rates, the ceiling failed the lower one
    (p99 80 ms) and passed the higher."""
    result = BenchResult({}, Plan(duration=1.0, rates=(100.0, 200.0), p99_max_ms=P99_MAX))
    for rate, ceiling_p99 in ((100.0, 80.0), (200.0, 10.0)):
        tallies = {
            Service.GATEWAY: _tally(Service.GATEWAY, rate, 5.0),
            Service.CEILING: _tally(Service.CEILING, rate, ceiling_p99),
        }
        result.steps.append(StepResult(OpenLoop(rate, 1.0), tallies))
    return result


def _doubt_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("DOUBT: ")]


def test_a_reference_s_sweep_doubt_is_printed() -> None:
    result = _sweep_with_a_ceiling_doubt()
    doubt = (
        "the ceiling passed at 200/s after failing at 100/s: the sustained rate stops below"
        " the failure; repeat the sweep"
    )
    assert all_doubts(result) == [doubt] == to_json(result)["sweep_doubts"]
    assert _doubt_lines(to_text(result)) == [f"DOUBT: {doubt}"]


def test_every_doubt_the_exit_status_counts_is_in_the_text(tmp_path: Path) -> None:
    result = _sweep_with_a_ceiling_doubt()
    result.doubts.append("the ledger is on tmpfs")
    result.warmup[Service.GATEWAY] = _tally(
        Service.GATEWAY, None, 5.0, accounting_doubts=("busy at the warm-up",)
    )
    closed = StepResult(ClosedLoop(4, 1.0))
    closed.tallies[Service.GATEWAY] = _tally(
        Service.GATEWAY, None, 5.0, throughput=800.0, accounting_doubts=("busy in the step",)
    )
    closed.tallies[Service.CEILING] = _tally(Service.CEILING, None, 5.0, throughput=400.0)
    result.steps.insert(0, closed)
    (slower,) = step_doubts(closed)  # the ceiling answered fewer than the gateway
    said = ["the ledger is on tmpfs", "busy at the warm-up", "busy in the step", slower,
            *to_json(result)["sweep_doubts"]]  # fmt: skip
    counted = all_doubts(result)
    assert len(counted) == len(said) == 5
    # all_doubts names the step and service before each; the text prints it under them.
    assert all(doubt.endswith(raw) for doubt, raw in zip(counted, said, strict=True))
    text = to_text(result)
    lines = _doubt_lines(text)
    assert len(lines) == len(counted)
    assert all(any(line.endswith(raw) for line in lines) for raw in said)
    args = argparse.Namespace(json=None, plot=None)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli_bench._report(args, result) == cli_bench.EXIT_NOT_CLEAN
    assert out.getvalue() == text
