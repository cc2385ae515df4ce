"""The figures a tally derives and the report shows: server CPU per verified answer, the
open loop's lateness against its schedule, latency over the verified answers alone, a
p99.9 of too few requests, the warm-up's length and the ratio lines' direction."""

from __future__ import annotations

import math

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop, Recording, Sample
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import ratios, tally_json, to_json, to_text
from clients.loadtest.tally import Tally, echo_judge, tally

P99_MAX = 50.0


def _recording(
    shape: OpenLoop | ClosedLoop,
    count: int,
    *,
    failed: int = 0,
    late_ms: dict[int, float] | None = None,
    server_cpu: float | None = 1.0,
) -> Recording:
    """``count`` requests answered in 5 ms, the first ``failed`` refused at once (1 ms);
    ``late_ms``: how late some of them were sent."""
    late_ms = late_ms or {}
    samples = []
    for index in range(count):
        sample = Sample(index, due=index * 0.001)
        sample.sent = sample.due + late_ms.get(index, 0.0) / 1000.0
        if index < failed:
            sample.status, sample.took = "RESOURCE_EXHAUSTED", 0.001
        else:
            sample.status, sample.response, sample.took = "OK", b"answer", 0.005
        samples.append(sample)
    return Recording(
        shape=shape, samples=samples, started=0.0, window=count * 0.001 + 0.005,
        client_cpu=0.1, server_cpu=server_cpu, max_in_flight=4,
        send_lag_max=max(late_ms.values(), default=0.0) / 1000.0, exhausted=False,
    )  # fmt: skip


def _result(*steps: StepResult, plan: Plan | None = None) -> BenchResult:
    result = BenchResult({}, plan or Plan(duration=0.1, rates=(1000.0,), p99_max_ms=P99_MAX))
    result.steps.extend(steps)
    return result


def _step(*tallies: Tally) -> StepResult:
    step = StepResult(OpenLoop(1000.0, 0.1))
    for counted in tallies:
        step.tallies[Service(counted.target)] = counted
    return step


def _row(text: str, service: str) -> list[str]:
    return next(line for line in text.splitlines() if line.startswith(f"  {service} ")).split()


def test_server_cpu_is_per_verified_answer_not_per_request_sent() -> None:
    # Half the calls shed: what the server spent went on the other half.
    counted = tally("gateway", _recording(OpenLoop(1000.0, 0.1), 100, failed=50), echo_judge)
    row = _row(to_text(_result(_step(counted))), "gateway")
    assert row[-2:] == ["20,000", "1,000"]  # server per answer, bench per request
    assert counted.server_cpu_per_answer_us == 1.0 / 50 * 1e6
    document = tally_json(counted)
    assert document["server_cpu_us_per_answer"] == 20_000.0
    assert document["server_cpu_us_per_request"] == 10_000.0  # the old figure, kept


def test_the_ratio_line_names_its_direction() -> None:
    gateway = tally("gateway", _recording(OpenLoop(1000.0, 0.1), 100, server_cpu=2.0), echo_judge)
    ceiling = tally("ceiling", _recording(OpenLoop(1000.0, 0.1), 100), echo_judge)
    step = _step(gateway, ceiling)
    assert "gateway/ceiling: throughput 1.00; server CPU per answer, ceiling/gateway: 0.50" in (
        to_text(_result(step))
    )
    assert ratios(step)["gateway/ceiling"]["server_cpu_per_answer"] == 0.5


def test_late_sends_are_counted_with_their_median_and_p99() -> None:
    late = {index: 3.0 for index in range(0, 100, 10)}  # 10 of 100 sent 3 ms late
    late[50] = 8.0
    counted = tally("gateway", _recording(OpenLoop(1000.0, 0.1), 100, late_ms=late), echo_judge)
    text = to_text(_result(_step(counted)))
    assert "gateway: the bench sent 10 of 100 requests more than 1 ms late (p50 0.0, p99 3.0, " \
        "max 8.0 ms;" in text  # fmt: skip
    assert "DOUBT" not in text  # 3 ms is within a tenth of the 50 ms bound
    assert counted.late_sends == 10
    assert counted.send_lag_p50_ms == 0.0
    assert math.isclose(counted.send_lag_p99_ms, 3.0)
    document = tally_json(counted)
    assert (document["late_sends"], document["send_lag_p99_ms"]) == (10, 3.0)
    assert document["send_lag_max_ms"] == 8.0


def test_an_open_loop_sent_late_at_its_p99_is_doubted() -> None:
    late = {index: 6.0 for index in range(0, 100, 2)}  # half of them, beyond 5 ms
    counted = tally("gateway", _recording(OpenLoop(1000.0, 0.1), 100, late_ms=late), echo_judge)
    result = _result(_step(counted))
    text = to_text(result)
    assert "DOUBT: the bench sent to the gateway 6.0 ms late at its p99, more than 10% of" \
        " the 50 ms bound" in text  # fmt: skip
    assert to_json(result)["steps"][0]["doubts"]


def test_latency_is_given_over_the_verified_answers_too() -> None:
    # Fast refusals pull the percentiles over every request down.
    counted = tally("gateway", _recording(OpenLoop(1000.0, 0.1), 100, failed=60), echo_judge)
    text = to_text(_result(_step(counted)))
    assert "gateway latency of the 40 verified answers: p50 5.0, p99 5.0, max 5.0 ms" in text
    assert counted.latency is not None and counted.latency_ok is not None
    assert counted.latency.p50 == 1.0 and counted.latency_ok.p50 == 5.0
    assert tally_json(counted)["latency_ok_ms"]["p50"] == 5.0


def test_a_p99_9_of_fewer_than_a_thousand_requests_is_marked_as_the_maximum() -> None:
    few = tally("gateway", _recording(OpenLoop(1000.0, 0.1), 100), echo_judge)
    text = to_text(_result(_step(few)))
    assert _row(text, "gateway")[9] == "5.0*"  # the p99.9 column
    assert "* p99.9 of fewer than 1,000 requests: their maximum" in text
    assert few.latency is not None and few.latency.p999_is_max
    assert tally_json(few)["latency_ms"]["p99.9_is_max"] is True
    many = tally("gateway", _recording(OpenLoop(1000.0, 1.0), 1000), echo_judge)
    assert many.latency is not None and not many.latency.p999_is_max
    assert "*" not in to_text(_result(_step(many)))


def test_the_warm_up_says_how_long_it_ran() -> None:
    warm_up = ClosedLoop(8, 60.0, limit=50)
    counted = tally("gateway", _recording(warm_up, 50), echo_judge)
    # To its last answer, at 54 ms (the last request was sent at 49 ms), every answer
    # counted: not to when the first call to end after the last send (at 50 ms) left its
    # caller with nothing to send, which left the four answers in flight then out.
    assert math.isclose(counted.duration, 0.054)
    assert math.isclose(counted.throughput, 50 / 0.054)
    # A step runs for its duration, whatever its window.
    assert tally("gateway", _recording(ClosedLoop(8, 10.0), 50), echo_judge).duration == 10.0
