"""Plans, percentiles and the command line's refusals: no bank needed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from cli.bench_options import read_rates
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.channels import MAX_CHANNELS
from clients.loadtest.errors import PlanError, PlotError
from clients.loadtest.load import MAX_CONCURRENCY, ClosedLoop, OpenLoop
from clients.loadtest.plan import (
    CLOSED_LOOP_POOL_RATE,
    MAX_DURATION_SECONDS,
    MAX_PREPARED,
    Plan,
)
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
        read_rates("100,fast")
    assert read_rates("100, 200,300") == (100.0, 200.0, 300.0)


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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be between 1 and"),
        ({"concurrency": -4}, "concurrency must be between 1 and"),
        ({"concurrency": MAX_CONCURRENCY + 1}, "concurrency must be between 1 and"),
        ({"rates": (10.0,), "channels": 0}, "channels must be between 1 and"),
        ({"rates": (10.0,), "channels": MAX_CHANNELS + 1}, "channels must be between 1 and"),
        ({"rates": (10.0,), "p99_max_ms": 0.0}, "--p99-max must be"),
        ({"rates": (10.0,), "p99_max_ms": math.nan}, "--p99-max must be"),
        ({"rates": (10.0,), "p99_max_ms": math.inf}, "--p99-max must be"),
        ({"rates": (math.nan,)}, "rates must be above 0"),
        ({"rates": (-5.0,)}, "rates must be above 0"),
        ({"rates": (10.0,), "timeout": 0.0}, "timeout must be above 0"),
        ({"rates": (10.0,), "requests": 0}, "requests must be between 1"),
        ({"concurrency": 2, "load_fraction": 1.5}, "--load-fraction must be"),
    ],
)
def test_a_plan_that_cannot_run_is_refused(options: dict[str, Any], message: str) -> None:
    # Refused when the plan is made, before a bank is started, not when the step comes.
    with pytest.raises(PlanError, match=message):
        Plan(duration=1.0, **options)


@pytest.mark.parametrize("duration", [0.0, -1.0, math.nan, MAX_DURATION_SECONDS + 1])
def test_a_duration_that_cannot_run_is_refused(duration: float) -> None:
    with pytest.raises(PlanError, match="duration must be above 0"):
        Plan(duration=duration, rates=(10.0,))


def test_a_sweep_longer_than_the_preparation_limit_is_refused() -> None:
    with pytest.raises(PlanError, match="more than"):
        Plan(duration=60.0, rates=(MAX_PREPARED / 60.0 + 1,))
    # Exactly at the limit (200,000 / 19 x 19 comes out just above 200,000 in floating point),
    # the rounding of the product must not add a request.
    Plan(duration=19.0, rates=(MAX_PREPARED / 19.0,))


def test_a_fraction_of_a_throughput_too_low_to_schedule_is_no_step() -> None:
    # 0.04/s x 0.8 rounds to 0.0/s: no open loop can run at it, and asking for one
    # after the closed loop ran failed the whole run and lost its report.
    plan = Plan(duration=1.0, concurrency=2, load_fraction=0.8)
    assert plan.at_fraction(0.04) is None
    assert plan.at_fraction(0.1) == OpenLoop(0.1, 1.0)


@pytest.mark.parametrize("text", ["", ",", "100;200", "100 200", "fast", "1,2,x"])
def test_malformed_rates_are_refused(text: str) -> None:
    with pytest.raises(PlanError, match="rates"):
        read_rates(text)


@pytest.mark.parametrize(
    ("values", "p50", "p90", "p99", "p999"),
    [
        ([5.0], 5.0, 5.0, 5.0, 5.0),
        ([1.0, 2.0], 1.0, 2.0, 2.0, 2.0),
        ([float(v) for v in range(1, 11)], 5.0, 9.0, 10.0, 10.0),
        ([float(v) for v in range(1, 101)], 50.0, 90.0, 99.0, 100.0),
        ([float(v) for v in range(1, 102)], 51.0, 91.0, 100.0, 101.0),
    ],
)
def test_percentiles_of_small_samples_and_exact_boundaries(
    values: list[float], p50: float, p90: float, p99: float, p999: float
) -> None:
    # Nearest rank: the smallest value with at least q % of the values at or below it.
    assert [percentile(values, q) for q in (50, 90, 99, 99.9)] == [p50, p90, p99, p999]
    latency = latency_of([v / 1000.0 for v in reversed(values)])  # any order, seconds
    assert latency is not None
    assert (latency.p50, latency.p90, latency.p99, latency.p999) == pytest.approx(
        (p50, p90, p99, p999)
    )
    assert latency.max == pytest.approx(max(values))


def test_a_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
