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

from clients.loadtest import spawn
from clients.loadtest.channels import GatewayAccess, open_channels
from clients.loadtest.cpu import tree_cpu
from clients.loadtest.load import ClosedLoop, OpenLoop, run
from clients.loadtest.tally import echo_judge, tally
from gateway.provisioning import init_bank
from setpay.v1 import authorization_pb2, common_pb2

DELAY = 0.6
THREADS = 4
RATE = 32.0
DURATION = 0.5
REQUESTS = math.ceil(RATE * DURATION)


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayAccess]:
    work = tmp_path_factory.mktemp("echo")
    init_bank(work / "bank", profile="ec", env={})
    server = spawn.serve_reference(
        "echo", work / "bank" / "setpay.toml", work, 1, delay_ms=DELAY * 1000, threads=THREADS
    )
    try:
        yield GatewayAccess.from_tls_dir(server.target, work / "bank" / "tls")
    finally:
        server.stop()


def any_request() -> bytes:
    return authorization_pb2.AuthorizeRequest(
        header=common_pb2.Header(version=1), auth_req=b"not opened by the echo"
    ).SerializeToString()


def test_latency_counts_from_the_schedule_and_includes_queueing(echo: GatewayAccess) -> None:
    channels = open_channels(echo, 2)
    try:
        recording = run(
            OpenLoop(RATE, DURATION), channels, [any_request()], timeout=30.0, reuse=True,
            server_cpu=tree_cpu([]),
        )  # fmt: skip
    finally:
        for channel in channels:
            channel.close()
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
    channels = open_channels(echo, 1)
    try:
        recording = run(
            ClosedLoop(2, 30.0), channels, [any_request()] * 3, timeout=30.0, reuse=False,
            server_cpu=tree_cpu([]),
        )  # fmt: skip
    finally:
        for channel in channels:
            channel.close()
    assert len(recording.samples) == 3
    assert recording.exhausted
    counted = tally("echo", recording, echo_judge)
    assert not counted.clean
