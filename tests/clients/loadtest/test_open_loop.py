"""The open loop against the real echo service made slow on purpose (``--delay-ms``).

The echo holds every call ``DELAY`` seconds on ``THREADS`` server threads, so requests
arriving faster than ``THREADS / DELAY`` per second queue in the server. An open loop
must keep sending on schedule regardless (more calls in flight than the server has
threads) and must measure each latency from the request's scheduled time, so the
queueing shows: the last answer cannot come before ``ceil(N / THREADS) * DELAY`` after
the first arrival, while the last request was due after ``(N - 1) / RATE``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from clients.loadtest import channels, load
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.cpu import tree_cpu
from clients.loadtest.errors import TargetError
from clients.loadtest.load import ClosedLoop, OpenLoop, run
from clients.loadtest.tally import NO_ANSWER, echo_judge, tally

from .conftest import echo_request, serve_echo

DELAY = 0.6
THREADS = 4
RATE = 32.0
DURATION = 0.5
REQUESTS = math.ceil(RATE * DURATION)


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayAccess]:
    work = tmp_path_factory.mktemp("echo")
    for server in serve_echo(work, 1, delay_ms=DELAY * 1000, threads=THREADS):
        yield GatewayAccess.from_tls_dir(server.target, work / "bank" / "tls")


def test_latency_counts_from_the_schedule_and_includes_queueing(echo: GatewayAccess) -> None:
    recording = run(
        OpenLoop(RATE, DURATION), echo, [echo_request()], channels=2, timeout=30.0, reuse=True,
        server_cpu=tree_cpu([]),
    )  # fmt: skip
    counted = tally("echo", recording, echo_judge)
    assert counted.sent == REQUESTS and counted.accounted
    assert counted.outcomes == {"echoed": REQUESTS}
    # The sender never waited for answers: more calls were in flight than server threads.
    assert recording.max_in_flight > THREADS
    # Every latency is at least the service time, measured from the scheduled time.
    assert all(sample.took >= DELAY for sample in recording.samples)
    # The queueing: rounds of THREADS calls, DELAY each, against the schedule's length.
    floor = math.ceil(REQUESTS / THREADS) * DELAY - (REQUESTS - 1) / RATE
    assert counted.latency is not None
    assert counted.latency.max >= floor * 1000
    assert floor > 2 * DELAY  # the bound really is queueing, not one service time


def test_closed_loop_stops_when_single_use_requests_run_out(echo: GatewayAccess) -> None:
    recording = run(
        ClosedLoop(2, 30.0), echo, [echo_request()] * 3, channels=1, timeout=30.0, reuse=False,
        server_cpu=tree_cpu([]),
    )  # fmt: skip
    assert len(recording.samples) == 3
    assert recording.exhausted
    counted = tally("echo", recording, echo_judge)
    assert not counted.clean


def test_answers_later_than_deadline_and_grace_count_as_never_answered(
    echo: GatewayAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bench waits the call's deadline plus a grace period for the last answers; a
    # call still running then has lost its answer and must be counted, not dropped.
    monkeypatch.setattr(load, "DRAIN_GRACE_SECONDS", 0.1 - 30.0)  # waits 0.1 s in all
    recording = run(
        OpenLoop(RATE, 0.1), echo, [echo_request()], channels=1, timeout=30.0, reuse=True,
        server_cpu=tree_cpu([]),
    )  # fmt: skip
    counted = tally("echo", recording, echo_judge)
    assert counted.sent == math.ceil(RATE * 0.1)
    assert counted.accounted
    assert counted.grpc_errors == {NO_ANSWER: counted.sent}


def test_a_target_that_does_not_accept_connections_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channels, "CONNECT_SECONDS", 0.5)
    nobody = GatewayAccess("127.0.0.1:1", None)  # port 1: nothing listens
    with pytest.raises(TargetError, match="did not accept 2 connections"):
        run(
            ClosedLoop(1, 1.0), nobody, [echo_request()], channels=2, timeout=1.0, reuse=True,
            server_cpu=tree_cpu([]),
        )  # fmt: skip
