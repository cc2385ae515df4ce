"""Every request sent ends in exactly one count of the tally, and the counts by kind add up."""

from __future__ import annotations

import math

from clients.loadtest.load import OpenLoop, Recording, Sample
from clients.loadtest.report import tally_json
from clients.loadtest.tally import NO_ANSWER, TIMEOUT_STATUS, Verdict, tally

DECLINED = "declined: AUTH_CODE_DECLINED / RESP_REASON_INSUFFICIENT_FUNDS"


def _sample(index: int, status: str, response: bytes | None, took: float) -> Sample:
    sample = Sample(index, due=index / 8)  # the open loop of 8/s below
    sample.sent = sample.due
    sample.status = status
    sample.response = response
    sample.took = took
    return sample


def _judge(index: int, response: bytes) -> Verdict:
    if response == b"approve":
        return Verdict(outcome="approved")
    if response == b"decline":
        return Verdict(outcome=DECLINED)
    return Verdict(set_error="unverifiable: ERROR_CODE_SIGNATURE_FAILURE")


def test_every_request_is_in_exactly_one_count() -> None:
    samples = [
        _sample(0, "OK", b"approve", 0.010),
        _sample(1, "OK", b"approve", 0.020),
        _sample(2, "OK", b"decline", 0.030),
        _sample(3, "OK", b"forged", 0.040),
        _sample(4, "UNAVAILABLE", None, 0.001),
        _sample(5, "RESOURCE_EXHAUSTED", None, 0.002),
        _sample(6, TIMEOUT_STATUS, None, 5.0),
        _sample(7, "", None, 10.0),  # given up on: never answered
    ]
    recording = Recording(
        shape=OpenLoop(8.0, 1.0), samples=samples, started=0.0, window=10.0, client_cpu=0.1,
        server_cpu=None, max_in_flight=3, send_lag_max=0.0, exhausted=False,
    )  # fmt: skip
    counted = tally("gateway", recording, _judge)
    assert counted.sent == 8
    assert (counted.ok, counted.errors, counted.timeouts) == (3, 4, 1)
    assert counted.accounted and not counted.clean
    assert counted.approved == 2
    assert counted.outcomes == {"approved": 2, DECLINED: 1}
    assert counted.grpc_errors == {"UNAVAILABLE": 1, "RESOURCE_EXHAUSTED": 1, NO_ANSWER: 1}
    assert counted.set_errors == {"unverifiable: ERROR_CODE_SIGNATURE_FAILURE": 1}
    document = tally_json(counted)
    total = (
        sum(document["outcomes"].values())
        + sum(document["errors_by_grpc_status"].values())
        + sum(document["errors_by_set_code"].values())
        + document["timeouts"]
    )
    assert total == document["sent"] == 8
    # The latency is over every request, failures included: the worst is the given-up one.
    assert counted.latency is not None
    assert counted.latency.max == 10_000.0
    # The verified answers per second of the step (1 s), not to the given-up call's end.
    assert math.isclose(counted.throughput, 3 / 1.0)
