"""The report flags a closed loop whose ceiling answered fewer per second than the gateway."""

from __future__ import annotations

import pytest

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import doubts, to_json, to_text
from clients.loadtest.tally import Tally


def _tally(target: Service, throughput: float) -> Tally:
    sent = int(throughput * 10)
    return Tally(
        target=str(target), shape="closed loop x32", offered_rate=None, duration=10.0,
        sent=sent, ok=sent, errors=0, timeouts=0, throughput=throughput, latency=None,
        client_cpu_seconds=1.0, server_cpu_seconds=None, max_in_flight=32,
        send_lag_max_ms=0.0, exhausted=False,
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
