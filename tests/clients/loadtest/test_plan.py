"""Plans, percentiles and the command line's refusals: no bank needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.errors import PlanError, PlotError
from clients.loadtest.load import ClosedLoop, OpenLoop
from clients.loadtest.plan import CLOSED_LOOP_POOL_RATE, Plan, parse_rates
from clients.loadtest.plot import plot
from clients.loadtest.tally import latency_of, percentile
from setcore.pan import luhn_valid, random_pan


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert percentile(values, 50) == 500.0
    assert percentile(values, 99) == 990.0
    assert percentile(values, 99.9) == 999.0
    assert percentile([7.0], 99.9) == 7.0


def test_latency_in_milliseconds() -> None:
    latency = latency_of([0.001, 0.002, 0.004])
    assert latency is not None
    assert latency.p50 == pytest.approx(2.0)
    assert latency.max == pytest.approx(4.0)
    assert latency_of([]) is None


def test_plan_needs_a_shape() -> None:
    with pytest.raises(PlanError, match="--rate/--rates"):
        Plan(duration=1.0)


def test_load_fraction_needs_the_closed_loop() -> None:
    with pytest.raises(PlanError, match="--load-fraction needs --concurrency"):
        Plan(duration=1.0, rates=(10.0,), load_fraction=0.8)


def test_rates_must_be_positive_numbers() -> None:
    with pytest.raises(PlanError, match="rates must be above 0"):
        Plan(duration=1.0, rates=(0.0,))
    with pytest.raises(PlanError, match="numbers separated by commas"):
        parse_rates("100,fast")
    assert parse_rates("100, 200,300") == (100.0, 200.0, 300.0)


def test_steps_and_their_request_counts() -> None:
    plan = Plan(duration=2.0, rates=(10.0, 20.5), concurrency=4, load_fraction=0.8)
    closed = plan.closed()
    assert closed == ClosedLoop(4, 2.0)
    assert plan.prepared_for(closed) == 2 * CLOSED_LOOP_POOL_RATE
    opens = plan.open_loops()
    assert [plan.prepared_for(s) for s in opens] == [20, 41]
    assert plan.at_fraction(1000.0) == OpenLoop(800.0, 2.0)
    assert plan.at_fraction(0.0) is None


def test_random_pans_are_valid_under_the_bin() -> None:
    pans = {random_pan("411111") for _ in range(20)}
    assert len(pans) == 20
    for pan in pans:
        digits = pan.reveal()
        assert digits.startswith("411111") and len(digits) == 16 and luhn_valid(digits)
        assert digits not in repr(pan)


def test_plot_needs_open_loop_steps(tmp_path: Path) -> None:
    result = BenchResult({}, Plan(duration=1.0, concurrency=2))
    result.steps.append(StepResult(ClosedLoop(2, 1.0)))
    with pytest.raises(PlotError, match="needs open-loop steps"):
        plot(result, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
