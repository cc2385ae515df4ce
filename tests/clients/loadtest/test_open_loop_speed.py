"""An open loop's ratio is its server CPU per answer, and a CPU second depends on the
machine's speed: a gateway and a ceiling run at different speeds are doubted in an open
loop as in a closed one."""

from __future__ import annotations

import pytest

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop, Shape
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import doubts, ratios, run_status, to_json, to_text
from clients.loadtest.speed import Speed
from clients.loadtest.tally import Tally

FAST = Speed((18.0,) * 20)
SLOW = Speed((36.0,) * 20)


def _tally(service: Service, cpu_seconds: float, speed: Speed) -> Tally:
    return Tally(
        target=str(service), shape="x", offered_rate=500.0, duration=10.0, sent=5000,
        ok=5000, errors=0, timeouts=0, throughput=500.0, latency=None,
        client_cpu_seconds=1.0, server_cpu_seconds=cpu_seconds, max_in_flight=4,
        send_lag_max_ms=0.0, exhausted=False, speed=speed,
    )  # fmt: skip


def _step(shape: Shape, gateway: Speed, ceiling: Speed) -> StepResult:
    return StepResult(
        shape,
        {Service.GATEWAY: _tally(Service.GATEWAY, 8.0, gateway),
         Service.CEILING: _tally(Service.CEILING, 3.0, ceiling)},
    )  # fmt: skip


@pytest.mark.parametrize(
    "shape", [OpenLoop(rate=500.0, duration=10.0), ClosedLoop(concurrency=32, duration=10.0)]
)
def test_a_ratio_across_two_speeds_is_doubted_in_either_loop(shape: Shape) -> None:
    step = _step(shape, SLOW, FAST)
    # The ratio it would have quoted: the ceiling's CPU per answer, 0.375 of the gateway's.
    assert ratios(step)["gateway/ceiling"]["server_cpu_per_answer"] == pytest.approx(0.375)
    assert doubts(step, 50.0) == [
        "the machine ran at different speeds for the gateway and the ceiling (reference loop "
        "36.0 against 18.0 ms, medians): repeat the run before using the ratio"
    ]
    result = BenchResult(setting={}, plan=Plan(duration=10.0, rates=(500.0,)), steps=[step])
    assert "DOUBT: the machine ran at different speeds" in to_text(result)
    assert to_json(result)["steps"][0]["doubts"] == doubts(step, 50.0)
    assert run_status(result, failed=1, not_clean=3) == 3


def test_an_open_loop_at_one_speed_is_not_doubted() -> None:
    step = _step(OpenLoop(rate=500.0, duration=10.0), FAST, Speed((19.0,) * 20))
    assert doubts(step, 50.0) == []
    result = BenchResult(setting={}, plan=Plan(duration=10.0, rates=(500.0,)), steps=[step])
    assert run_status(result, failed=1, not_clean=3) == 0
