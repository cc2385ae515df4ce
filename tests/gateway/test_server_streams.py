"""Server reflection streams held open and idle take nothing from the calls: neither
their threads nor their places under the limit of calls in flight.

A reflection stream holds a thread for as long as its client keeps it open, idle or not,
and anyone may open one on the CA's port (no client certificate). On the pool, as many
idle streams as the pool has threads left every call and health check waiting behind
them until their deadline. They run on a lane of their own (``setcore.admission``'s
``InFlightPool.streams``), and a stream past its threads is shed, counted, like a call
past the limit. Counted among the calls, two held open took two places of the limit. A
real gRPC server on port 0; waits poll under a deadline.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from gateway.server import ServerLimits, ServiceBinding, create_server
from setpay.v1 import authorization_pb2, services_pb2_grpc

PG = "setpay.v1.PaymentGatewayService"
REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
# The lane's threads (``setcore.admission.STREAM_THREADS``), written out so that this test
# reads the same before the lane was made.
LANE_THREADS = 2
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0
# An idle stream's deadline: longer than any test keeps one, and short enough that a
# stream left waiting for a thread fails the test rather than hang it.
STREAM_SECONDS = 3 * WAIT_SECONDS


class _Quick(services_pb2_grpc.PaymentGatewayServiceServicer):
    """Authorize answers at once: a call that waits, waits for a thread."""

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        return authorization_pb2.AuthorizeResponse()


class _Gated(services_pb2_grpc.PaymentGatewayServiceServicer):
    """Authorize waits until the test opens the gate: calls stay in flight meanwhile."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.gate.wait(WAIT_SECONDS)
        return authorization_pb2.AuthorizeResponse()


class _Requests:
    """A reflection stream's requests, sent when the test says; idle in between."""

    def __init__(self) -> None:
        self._queue: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()

    def send(self, request: reflection_pb2.ServerReflectionRequest) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Iterator[reflection_pb2.ServerReflectionRequest]:
        while (request := self._queue.get()) is not None:
            yield request


class _Served:
    """A server of ``threads`` threads and its channels: the calls', an idle client's."""

    def __init__(self, threads: int, limit: int = 16, servicer: Any = None) -> None:
        self.server, port, self.health = create_server(
            [ServiceBinding("PaymentGatewayService", servicer or _Quick())],
            "127.0.0.1:0",
            ServerLimits(max_message_bytes=1 << 20, max_concurrent_rpcs=limit, threads=threads),
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.idler = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.authorize = self.channel.unary_unary(
            f"/{PG}/Authorize", request_serializer=bytes, response_deserializer=bytes
        )
        self.check = health_pb2_grpc.HealthStub(self.channel).Check
        self.requests: list[_Requests] = []

    def idle_stream(self) -> Any:
        """A reflection stream that listed the services once and now sends nothing."""
        sent = _Requests()
        self.requests.append(sent)
        stub = reflection_pb2_grpc.ServerReflectionStub(self.idler)
        stream = stub.ServerReflectionInfo(iter(sent), timeout=STREAM_SECONDS)
        sent.send(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = next(stream).list_services_response.service
        assert PG in {service.name for service in listed}
        return stream

    def close(self) -> None:
        for sent in self.requests:
            sent.close()
        self.idler.close()
        self.channel.close()
        self.health.stop()
        self.server.stop(None).wait(WAIT_SECONDS)


@pytest.fixture
def served() -> Iterator[_Served]:
    s = _Served(threads=LANE_THREADS)
    try:
        yield s
    finally:
        s.close()


def test_idle_reflection_streams_leave_the_calls_their_threads(served: _Served) -> None:
    # As many idle streams as the pool has threads: on the pool, they held every one.
    streams = [served.idle_stream() for _ in range(LANE_THREADS)]
    started = time.monotonic()
    assert served.authorize(b"", timeout=WAIT_SECONDS) == b""
    reply = served.check(health_pb2.HealthCheckRequest(service=PG), timeout=WAIT_SECONDS)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert time.monotonic() - started < WAIT_SECONDS / 2
    # The streams are still there and still answer.
    served.requests[0].send(reflection_pb2.ServerReflectionRequest(list_services=""))
    assert next(streams[0]).list_services_response.service


def test_a_reflection_stream_past_the_lanes_threads_is_shed_and_counted(
    registry: CollectorRegistry, served: _Served
) -> None:
    streams = [served.idle_stream() for _ in range(LANE_THREADS)]
    with pytest.raises(grpc.RpcError) as exc:
        served.idle_stream()
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    shed = registry.get_sample_value(
        "setpay_rpc_shed_total", {"service": REFLECTION, "method": "ServerReflectionInfo"}
    )
    assert shed == 1
    # A stream that ends gives its place back.
    served.requests[0].close()
    assert list(streams[0]) == []
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            served.idle_stream()
            break
        except grpc.RpcError as retry:
            assert retry.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() < deadline, "the ended stream never gave its place back"
            time.sleep(0.01)


def test_the_lanes_threads_end_when_the_server_stops(served: _Served) -> None:
    before = set(threading.enumerate())
    served.idle_stream()
    lane = [t for t in set(threading.enumerate()) - before if t.name.startswith("stream_")]
    assert len(lane) == 1
    assert served.server.stop(None).wait(WAIT_SECONDS)
    deadline = time.monotonic() + WAIT_SECONDS
    while lane[0].is_alive():
        assert time.monotonic() < deadline, "the lane's thread still runs after the stop"
        time.sleep(0.01)


def test_idle_reflection_streams_leave_the_calls_their_whole_limit() -> None:
    limit = 4
    gated = _Gated()
    s = _Served(threads=limit, limit=limit, servicer=gated)
    try:
        streams = [s.idle_stream() for _ in range(LANE_THREADS)]  # held: kept referenced
        # One call past the limit: whichever comes last is shed, at once, and the others
        # stay in flight (one in Authorize, the rest waiting for its turn) until the gate.
        calls = [s.authorize.future(b"", timeout=WAIT_SECONDS) for _ in range(limit + 1)]
        deadline = time.monotonic() + WAIT_SECONDS
        while not any(call.done() for call in calls):
            assert time.monotonic() < deadline, "no call was shed"
            time.sleep(0.01)
        gated.gate.set()
        assert all(stream.is_active() for stream in streams)
        outcomes = sorted("OK" if call.exception() is None else call.code().name for call in calls)
    finally:
        gated.gate.set()
        s.close()
    # Counted among the calls, the two streams had two more shed.
    assert outcomes == ["OK"] * limit + ["RESOURCE_EXHAUSTED"], outcomes
