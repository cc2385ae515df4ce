"""The text report prints rates as the JSON has them, to the digits a reader compares: a
sweep of 0.5/s and 2.5/s said it sustained "2/s" (rounded half to even) where the JSON said
2.5, a rate below 1/s read "0/s"; and a closed loop that ran out of requests is headed by
its planned duration while its answers/s are over the interval it ran, which is said."""

from __future__ import annotations

import pytest

from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import rate_text, to_json, to_text
from clients.loadtest.tally import Latency, Tally


def _tally(throughput: float, *, duration: float, exhausted: bool = False) -> Tally:
    sent = max(1, round(throughput * duration))
    return Tally(
        target="gateway", shape="x", offered_rate=None, duration=duration, sent=sent, ok=sent,
        errors=0, timeouts=0, throughput=throughput,
        latency=Latency(p50=5.0, p90=6.0, p99=8.0, p999=8.0, max=8.0, mean=5.0),
        client_cpu_seconds=0.01, server_cpu_seconds=0.01, max_in_flight=1,
        send_lag_max_ms=0.0, exhausted=exhausted,
    )  # fmt: skip


def _row(text: str, heading: str) -> list[str]:
    """The gateway's row under ``heading``, split into its cells."""
    lines = text.splitlines()
    start = lines.index(heading)
    return next(line for line in lines[start:] if line.startswith("  gateway ")).split()


def _sweep() -> BenchResult:
    result = BenchResult({}, Plan(duration=2.0, rates=(0.5, 2.5)))
    for rate in (0.5, 2.5):
        step = StepResult(OpenLoop(rate, 2.0), {Service.GATEWAY: _tally(rate, duration=2.0)})
        result.steps.append(step)
    return result


def test_a_sustained_rate_is_printed_as_the_json_gives_it() -> None:
    result = _sweep()
    assert to_json(result)["sustained_rate"] == {"gateway": 2.5}
    assert to_text(result).endswith("p99 <= 50 ms and no errors: 2.5/s\n")


def test_answers_per_second_below_one_are_not_zero() -> None:
    text = to_text(_sweep())
    # The answers/s cell: sent, ok, err, t/o, then it.
    assert _row(text, "open loop 0.5/s, 2 s")[5] == "0.5"
    assert _row(text, "open loop 2.5/s, 2 s")[5] == "2.5"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (469.022, "469"),
        (3078.0, "3,078"),
        (100.0, "100"),
        (99.94, "99.9"),
        (7.4, "7.4"),
        (2.5, "2.5"),
        (0.5, "0.5"),
        (0.04, "0.04"),  # not "0.0": some answers came
        (0.0, "0.0"),
    ],
)
def test_rates_keep_the_digits_a_reader_compares(value: float, shown: str) -> None:
    assert rate_text(value) == shown


def test_a_ceiling_slower_than_the_gateway_is_said_in_tenths_below_100() -> None:
    step = StepResult(ClosedLoop(4, 2.0))
    step.tallies[Service.GATEWAY] = _tally(50.5, duration=2.0)
    step.tallies[Service.CEILING] = _tally(40.5, duration=2.0)
    step.tallies[Service.CEILING].target = "ceiling"
    result = BenchResult({}, Plan(duration=2.0, concurrency=4), steps=[step])
    assert "the ceiling answered 40.5/s, fewer than the gateway's 50.5/s" in to_text(result)


def test_a_closed_loop_that_ran_out_says_the_interval_it_ran() -> None:
    step = StepResult(ClosedLoop(4, 2.0))
    step.tallies[Service.GATEWAY] = _tally(469.022, duration=0.64, exhausted=True)
    result = BenchResult({}, Plan(duration=2.0, concurrency=4, requests=300), steps=[step])
    text = to_text(result)
    assert "\nclosed loop x4, 2 s\n" in text
    assert _row(text, "closed loop x4, 2 s")[5] == "469"
    assert (
        "    gateway: ran out of prepared requests after 0.64 s of the 2 s planned: its "
        "answers/s are over those (raise --requests)\n"
    ) in text
    assert to_json(result)["steps"][0]["results"]["gateway"]["duration_s"] == 0.64


def test_a_run_that_lasted_its_plan_says_nothing_of_it() -> None:
    text = to_text(_sweep())
    assert "planned" not in text
