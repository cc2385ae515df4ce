"""The report flags a closed loop whose ceiling answered fewer per second than the gateway."""

from __future__ import annotations

import pytest

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import doubts, tally_json, to_json, to_text
from clients.loadtest.speed import Speed
from clients.loadtest.tally import Tally


def _tally(target: Service, throughput: float, speed: Speed | None = None) -> Tally:
    sent = int(throughput * 10)
    return Tally(
        target=str(target), shape="closed loop x32", offered_rate=None, duration=10.0,
        sent=sent, ok=sent, errors=0, timeouts=0, throughput=throughput, latency=None,
        client_cpu_seconds=1.0, server_cpu_seconds=None, max_in_flight=32,
        send_lag_max_ms=0.0, exhausted=False, speed=speed,
    )  # fmt: skip


def _step(gateway: float, ceiling: float, shape: ClosedLoop | OpenLoop) -> StepResult:
    tallies = {
        Service.GATEWAY: _tally(Service.GATEWAY, gateway),
        Service.CEILING: _tally(Service.CEILING, ceiling),
    }
    return StepResult(shape, tallies)


@pytest.mark.parametrize(
    ("gateway", "ceiling", "doubted"),
    [
        (717.0, 563.0, True),  # a SoftHSM run of this project's benchmarks
        (755.0, 1107.0, False),
        (1000.0, 980.0, False),  # within the tolerance of a shared machine
    ],
)
def test_a_ceiling_slower_than_the_gateway_is_doubted(
    gateway: float, ceiling: float, doubted: bool
) -> None:
    step = _step(gateway, ceiling, ClosedLoop(concurrency=32, duration=10.0))
    found = doubts(step)
    assert bool(found) == doubted
    result = BenchResult(setting={}, plan=Plan(duration=10.0, concurrency=32), steps=[step])
    text = to_text(result)
    assert ("DOUBT: the ceiling answered 563/s" in text) == doubted
    document = to_json(result)
    assert document["steps"][0]["doubts"] == found


def test_an_open_loop_is_never_doubted_for_equal_rates() -> None:
    # Far below the tolerance: a closed loop with these figures would be doubted.
    assert doubts(_step(500.0, 300.0, ClosedLoop(concurrency=32, duration=10.0)))
    assert doubts(_step(500.0, 300.0, OpenLoop(rate=500.0, duration=10.0))) == []


@pytest.mark.parametrize(
    ("gateway_ms", "ceiling_ms", "doubted"),
    [
        ((24.0, 25.0, 40.0, 24.0, 25.0), (41.0, 40.0, 24.0, 40.0, 41.0), True),  # 25, 40 ms
        ((40.0, 41.0, 39.0, 40.0, 40.0), (24.0, 23.0, 25.0, 24.0, 24.0), True),  # either way
        ((24.0, 25.0, 40.0, 24.0, 25.0), (25.0, 27.0, 23.0, 25.0, 25.0), False),  # 25, 25 ms
        ((24.0, 25.0, 24.0), (41.0, 40.0, 40.0), False),  # too few readings to judge
    ],
)
def test_a_ceiling_run_at_another_speed_is_doubted(
    gateway_ms: tuple[float, ...], ceiling_ms: tuple[float, ...], doubted: bool
) -> None:
    step = StepResult(
        ClosedLoop(concurrency=32, duration=10.0),
        {
            Service.GATEWAY: _tally(Service.GATEWAY, 800.0, Speed(gateway_ms)),
            Service.CEILING: _tally(Service.CEILING, 1600.0, Speed(ceiling_ms)),
        },
    )
    found = doubts(step)
    assert any("different speeds" in doubt for doubt in found) == doubted


def test_the_machine_speed_of_a_run_is_reported() -> None:
    counted = _tally(Service.GATEWAY, 800.0, Speed((24.0, 22.5, 41.0, 25.0)))
    assert tally_json(counted)["machine_speed"] == {
        "reference_loop_ms_median": 24.5,
        "reference_loop_ms_fastest": 22.5,
        "reference_loop_ms_slowest": 41.0,
        "readings": 4,
    }
    step = StepResult(ClosedLoop(concurrency=32, duration=10.0), {Service.GATEWAY: counted})
    result = BenchResult(setting={}, plan=Plan(duration=10.0, concurrency=32), steps=[step])
    assert "gateway machine speed: reference loop 24.5 ms (median of 4 readings, 22.5-41.0)" in (
        to_text(result)
    )
    assert tally_json(_tally(Service.GATEWAY, 800.0))["machine_speed"] is None
