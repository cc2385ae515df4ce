"""A closed loop that ran out of prepared requests with only a few for each caller spent
much of its interval draining, fewer callers busy: its throughput is not a rate the
service keeps up, and the report doubts it (the plan itself is not refused)."""

from __future__ import annotations

import pytest

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import POOL_PER_CALLER, all_doubts, doubts, to_json, to_text
from clients.loadtest.tally import Tally

CALLERS = 32


def _tally(target: Service, sent: int, exhausted: bool) -> Tally:
    return Tally(
        target=str(target), shape=f"closed loop x{CALLERS}", offered_rate=None, duration=0.05,
        sent=sent, ok=sent, errors=0, timeouts=0, throughput=sent / 0.05, latency=None,
        client_cpu_seconds=0.1, server_cpu_seconds=None, max_in_flight=CALLERS,
        send_lag_max_ms=0.0, exhausted=exhausted,
    )  # fmt: skip


def _step(sent: int, exhausted: bool = True) -> StepResult:
    # The references reuse their requests: only the gateway runs out.
    tallies = {
        Service.GATEWAY: _tally(Service.GATEWAY, sent, exhausted),
        Service.ECHO: _tally(Service.ECHO, 10 * sent, False),
    }
    return StepResult(ClosedLoop(CALLERS, 10.0), tallies)


def test_a_closed_loop_out_of_a_small_pool_is_doubted() -> None:
    step = _step(2 * CALLERS)
    [doubt] = doubts(step)
    assert "gateway ran out after 64 requests" in doubt
    assert f"give --requests {POOL_PER_CALLER * CALLERS:,} or more" in doubt
    result = BenchResult({}, Plan(duration=10.0, concurrency=CALLERS, requests=2 * CALLERS))
    result.steps.append(step)
    assert all_doubts(result) == [f"closed loop x{CALLERS}: {doubt}"]
    assert f"    DOUBT: {doubt}" in to_text(result).splitlines()
    assert to_json(result)["steps"][0]["doubts"] == [doubt]


@pytest.mark.parametrize(
    ("sent", "exhausted"),
    [
        (POOL_PER_CALLER * CALLERS, True),  # enough for each caller
        (2 * CALLERS, False),  # a slow service's few answers: it did not run out
    ],
)
def test_a_closed_loop_with_enough_requests_is_not_doubted(sent: int, exhausted: bool) -> None:
    assert doubts(_step(sent, exhausted)) == []
