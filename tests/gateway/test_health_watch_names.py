"""The bank's health servicer keeps only the names its server serves: a Watch for any other
is told SERVICE_UNKNOWN, stays open until its client ends it or the server stops, and
leaves nothing behind. Before, grpc_health's servicer kept every name ever watched, for
good, and a peer with no client certificate (the CA's port) grew a worker's memory without
bound by opening and cancelling Watch streams for distinct long names.

A real server on port 0 (``gateway.server.create_server``) over a PaymentGateway servicer
that is never called: what is under test is the health service beside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.health_monitor import HealthMonitor, WatchEndingHealth
from gateway.server import Server, ServerLimits, ServiceBinding, create_server
from setpay.v1 import services_pb2_grpc
from tests.setcore.served_health_support import (
    NAME_BYTES,
    STREAMS,
    UNKNOWN,
    WAIT_SECONDS,
    client_channel,
    grown_by_watches,
    long_name,
)

PAYMENT_GATEWAY = "setpay.v1.PaymentGatewayService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class _Bank:
    server: Server
    monitor: HealthMonitor
    channel: grpc.Channel
    down: threading.Event  # set: the probe fails, and the next ``probe()`` says NOT_SERVING

    @property
    def servicer(self) -> WatchEndingHealth:
        return self.monitor._servicer

    def kept(self) -> dict[str, int]:
        """The names the health servicer keeps Watch streams under, and how many each."""
        return self.servicer.watchers()


@pytest.fixture
def bank() -> Iterator[_Bank]:
    down = threading.Event()

    def probe() -> None:
        if down.is_set():
            raise ConnectionError("the test's probe is down")

    server, port, monitor = create_server(
        [
            ServiceBinding(
                "PaymentGatewayService", services_pb2_grpc.PaymentGatewayServiceServicer()
            )
        ],
        "127.0.0.1:0",
        ServerLimits(max_message_bytes=1 << 20, max_concurrent_rpcs=64, threads=4),
        probes=(probe,),
    )
    channel = client_channel(port)
    yield _Bank(server, monitor, channel, down)
    channel.close()
    monitor.stop()
    server.stop(None).wait()


def test_cancelled_watches_for_names_not_served_leave_nothing_behind(bank: _Bank) -> None:
    first, grown = grown_by_watches(bank.channel)
    assert first == [UNKNOWN] * STREAMS
    # Only the names served are kept (those watched so far: none but the tests' own).
    assert set(bank.kept()) <= {"", PAYMENT_GATEWAY}, sorted(len(name) for name in bank.kept())
    assert bank.kept() == {}  # no stream of a served name was opened
    # Kept, the names alone would be STREAMS MiB; a quarter of that is far above what the
    # calls themselves leave once the process is warm (a few MiB at most: buffers reused).
    assert grown < STREAMS * NAME_BYTES // 4, f"RSS grew {grown >> 20} MiB"


def test_a_watch_for_a_name_not_served_is_told_unknown_stays_open_and_ends_at_the_stop(
    bank: _Bank,
) -> None:
    watch = health_pb2_grpc.HealthStub(bank.channel).Watch(
        health_pb2.HealthCheckRequest(service="setpay.v1.NoSuchService"), timeout=WAIT_SECONDS * 3
    )
    assert next(watch).status == UNKNOWN
    bank.down.set()
    bank.monitor.probe()  # NOT_SERVING for the names served; nothing for this one
    assert set(bank.kept()) <= {"", PAYMENT_GATEWAY}
    assert watch.is_active()  # open, as the protocol says, but kept under no name
    stopped = time.monotonic()
    bank.monitor.stop()
    assert [response.status for response in watch] == []  # ended, with nothing more said
    assert watch.code() == grpc.StatusCode.OK
    assert time.monotonic() - stopped < WAIT_SECONDS


def test_a_watch_for_a_served_name_is_told_each_change_and_leaves_its_watchers_when_ended(
    bank: _Bank,
) -> None:
    watch = health_pb2_grpc.HealthStub(bank.channel).Watch(
        health_pb2.HealthCheckRequest(service=PAYMENT_GATEWAY), timeout=WAIT_SECONDS * 3
    )
    assert next(watch).status == SERVING
    assert bank.kept() == {PAYMENT_GATEWAY: 1}
    bank.down.set()
    assert not bank.monitor.probe()
    for response in watch:  # the background probe may re-send SERVING before this one's
        if response.status == NOT_SERVING:
            break
        assert response.status == SERVING
    watch.cancel()
    deadline = time.monotonic() + WAIT_SECONDS
    while PAYMENT_GATEWAY in bank.kept():
        assert time.monotonic() < deadline, "the cancelled stream is still among the watchers"
        time.sleep(0.01)


def test_a_check_for_a_name_not_served_is_not_found_and_keeps_nothing(bank: _Bank) -> None:
    check = health_pb2_grpc.HealthStub(bank.channel).Check
    statuses = bank.servicer.statuses()
    with pytest.raises(grpc.RpcError) as refused:
        check(health_pb2.HealthCheckRequest(service=long_name(0)), timeout=WAIT_SECONDS)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert bank.servicer.statuses() == statuses
    assert set(bank.kept()) <= {"", PAYMENT_GATEWAY}
    assert check(health_pb2.HealthCheckRequest(service=PAYMENT_GATEWAY)).status == SERVING


def test_the_monitor_names_the_bound_services_and_only_they_are_served(bank: _Bank) -> None:
    assert bank.servicer.served == {"", PAYMENT_GATEWAY}
    with pytest.raises(ValueError, match="not served here"):
        bank.servicer.set("setpay.v1.NoSuchService", SERVING)
    assert "setpay.v1.NoSuchService" not in bank.servicer.statuses()
