"""A sweep's verdict: the highest open-loop rate that ran clean with p99 within --p99-max."""

from __future__ import annotations

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import to_json, to_text
from clients.loadtest.tally import Latency, Tally

P99_MAX = 50.0


def _tally(rate: float | None, p99: float, *, errors: int = 0, timeouts: int = 0) -> Tally:
    sent = 1000
    return Tally(
        target="gateway", shape="x", offered_rate=rate, duration=10.0, sent=sent,
        ok=sent - errors - timeouts, errors=errors, timeouts=timeouts, throughput=100.0,
        latency=Latency(p50=p99 / 4, p90=p99 / 2, p99=p99, p999=p99, max=p99, mean=p99 / 4),
        client_cpu_seconds=1.0, server_cpu_seconds=None, max_in_flight=8,
        send_lag_max_ms=0.0, exhausted=False,
    )  # fmt: skip


def _sweep(*runs: tuple[float, Tally]) -> BenchResult:
    plan = Plan(duration=10.0, rates=tuple(rate for rate, _ in runs), p99_max_ms=P99_MAX)
    result = BenchResult({}, plan)
    for rate, counted in runs:
        result.steps.append(StepResult(OpenLoop(rate, 10.0), {Service.GATEWAY: counted}))
    return result


def test_the_highest_rate_within_the_bound_is_sustained() -> None:
    result = _sweep(
        (100.0, _tally(100.0, 10.0)),
        (200.0, _tally(200.0, P99_MAX)),  # exactly at the bound: within it
        (400.0, _tally(400.0, P99_MAX + 0.001)),
    )
    assert result.sustained() == 200.0
    assert to_json(result)["sustained_rate"] == {"gateway": 200.0}
    assert "p99 <= 50 ms and no errors: 200/s" in to_text(result)


def test_a_rate_that_shed_or_timed_out_is_not_sustained_however_fast_its_answers() -> None:
    # A gateway that sheds load answers the shed calls at once: their p99 looks good.
    result = _sweep(
        (100.0, _tally(100.0, 10.0)),
        (200.0, _tally(200.0, 5.0, errors=1)),
        (400.0, _tally(400.0, 5.0, timeouts=1)),
    )
    assert result.sustained() == 100.0


def test_no_rate_within_the_bound_is_said_so() -> None:
    result = _sweep((100.0, _tally(100.0, 80.0)), (200.0, _tally(200.0, 5.0, errors=3)))
    assert result.sustained() is None
    assert to_json(result)["sustained_rate"] == {"gateway": None}
    assert "no errors: none of the rates" in to_text(result)


def test_a_closed_loop_is_no_rate_of_the_sweep() -> None:
    result = BenchResult({}, Plan(duration=10.0, concurrency=4, p99_max_ms=P99_MAX))
    result.steps.append(StepResult(ClosedLoop(4, 10.0), {Service.GATEWAY: _tally(None, 1.0)}))
    assert result.sustained() is None
    assert "highest open-loop rate" not in to_text(result)


def test_a_rate_that_passed_above_one_that_failed_is_not_sustained_but_doubted() -> None:
    # Rates in any order: judged from the lowest up, and the sustained rate stops below
    # the first that failed, however a higher one fared by luck.
    result = _sweep(
        (400.0, _tally(400.0, 20.0)),
        (100.0, _tally(100.0, 10.0)),
        (200.0, _tally(200.0, P99_MAX * 4)),
        (300.0, _tally(300.0, 5.0, errors=1)),
    )
    assert result.sustained() == 100.0
    doubt = (
        "the gateway passed at 400/s after failing at 200/s: the sustained rate stops below"
        " the failure; repeat the sweep"
    )
    assert result.sweep_doubts() == [doubt]
    assert to_json(result)["sweep_doubts"] == [doubt]
    text = to_text(result)
    assert "p99 <= 50 ms and no errors: 100/s\n" in text
    assert f"\nDOUBT: {doubt}\n" in text
