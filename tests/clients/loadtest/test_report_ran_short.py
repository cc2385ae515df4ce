"""A closed loop that ended before its planned duration without running out of prepared
requests (one bounded by a number of requests) says the interval it ran: its answers/s are
over that, not over the duration its heading names (``report._details``)."""

from __future__ import annotations

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import to_text
from clients.loadtest.tally import Latency, Tally


def _result(duration: float) -> BenchResult:
    tally = Tally(
        target="gateway", shape="closed loop x4", offered_rate=None, duration=duration,
        sent=100, ok=100, errors=0, timeouts=0, throughput=100 / duration,
        latency=Latency(p50=5.0, p90=6.0, p99=8.0, p999=8.0, max=8.0, mean=5.0),
        client_cpu_seconds=0.01, server_cpu_seconds=0.01, max_in_flight=4,
        send_lag_max_ms=0.0, exhausted=False,
    )  # fmt: skip
    step = StepResult(ClosedLoop(4, 2.0, limit=100), {Service.GATEWAY: tally})
    return BenchResult({}, Plan(duration=2.0, concurrency=4), steps=[step])


def test_a_closed_loop_that_ended_early_says_the_interval_it_ran() -> None:
    text = to_text(_result(0.8))
    assert "\n    gateway: ran 0.8 s of the 2 s planned: its answers/s are over those\n" in text
    assert "ran out of prepared requests" not in text  # it did not: no --requests advice


def test_one_that_ran_its_plan_says_nothing_of_it() -> None:
    assert "planned" not in to_text(_result(2.0))
