"""Load shedding at ``max_concurrent_rpcs``: every shed call counted, answered at once.

A real gRPC server on port 0 whose Authorize blocks on an Event holds calls in flight for
as long as a test wants. These tests also pin what ``gateway.server`` relies on in grpcio
without gRPC documenting it: a shed call's refusal runs on a thread of its own (the
behaviour's ``experimental_thread_pool``); an admitted call reaches the pool before the
next call is admitted (so no more than the limit are ever admitted); and gRPC counts a
refusal handed to that thread as active until it is answered (so its backstop bounds the
refusals waiting). Waits poll what they wait for (the pool's count of calls in flight,
the servicer's count of calls entered), each under a deadline: no fixed sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry

from gateway import admission, server
from gateway.cpu_turn import PROCESS_TURN
from gateway.server import ServerLimits, ServiceBinding, create_server
from setpay.v1 import authorization_pb2, services_pb2_grpc

PG = "setpay.v1.PaymentGatewayService"
HEALTH = "grpc.health.v1.Health"
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0
# Longer than any test: a call still blocked after this is a bug, not a slow machine.
BLOCK_SECONDS = 60.0


class _Blocking(services_pb2_grpc.PaymentGatewayServiceServicer):
    """Authorize waits for ``release``: each call stays in flight until the test says."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.entered += 1  # under the process's turn: one thread at a time
        with PROCESS_TURN.aside():  # as a handler waiting for the ledger does
            self.release.wait(BLOCK_SECONDS)
        return authorization_pb2.AuthorizeResponse()


class _Served:
    """A running server with a blocking servicer, its pool, and a channel to it."""

    def __init__(self, limit: int, threads: int, pools: list[admission.InFlightPool]) -> None:
        self.servicer = _Blocking()
        self.server, port, self.health = create_server(
            [ServiceBinding("PaymentGatewayService", self.servicer)],
            "127.0.0.1:0",
            ServerLimits(max_message_bytes=1 << 20, max_concurrent_rpcs=limit, threads=threads),
        )
        self.pool = pools[-1]  # the one create_server just made
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.authorize = self.channel.unary_unary(
            f"/{PG}/Authorize", request_serializer=bytes, response_deserializer=bytes
        )
        self.unknown = self.channel.unary_unary(
            f"/{PG}/NoSuchMethod", request_serializer=bytes, response_deserializer=bytes
        )
        self.check = health_pb2_grpc.HealthStub(self.channel).Check

    def close(self) -> None:
        self.servicer.release.set()
        self.channel.close()
        self.health.stop()
        self.server.stop(None).wait()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., _Served]]:
    opened: list[_Served] = []
    pools: list[admission.InFlightPool] = []

    class _Kept(admission.InFlightPool):
        """The server's own pool, kept where the test can read its count."""

        def __init__(self, threads: int) -> None:
            super().__init__(threads)
            pools.append(self)

    monkeypatch.setattr(server, "InFlightPool", _Kept)

    def open_one(limit: int, threads: int) -> _Served:
        opened.append(_Served(limit, threads, pools))
        return opened[-1]

    yield open_one
    for s in opened:
        s.close()


def _settled(calls: list[Any], count: int) -> list[Any]:
    """Wait until ``count`` of ``calls`` have an answer; return those."""
    deadline = time.monotonic() + WAIT_SECONDS
    while len(done := [c for c in calls if c.done()]) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(done)} of {len(calls)} answered, {count} expected")
        time.sleep(0.01)
    assert len(done) == count, f"{len(done)} answered, {count} expected"
    return done


def _entered(s: _Served, count: int) -> None:
    """Wait until ``count`` calls are blocked in the servicer."""
    deadline = time.monotonic() + WAIT_SECONDS
    while s.servicer.entered < count:
        assert time.monotonic() < deadline, f"{s.servicer.entered} of {count} calls arrived"
        time.sleep(0.01)


def _in_flight(s: _Served, count: int) -> None:
    """Wait until exactly ``count`` calls are in the server's pool (queued or running)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while s.pool.in_flight != count:
        assert time.monotonic() < deadline, f"{s.pool.in_flight} in flight, {count} expected"
        time.sleep(0.01)


def _caught_up(s: _Served) -> None:
    """Return once the server's poll thread has handled what reached it on this channel
    before now: a call of an unknown method is refused there, after those events."""
    with pytest.raises(grpc.RpcError) as exc:
        s.unknown(b"", timeout=WAIT_SECONDS)
    assert exc.value.code() is grpc.StatusCode.UNIMPLEMENTED


def _retry_delay(call: Any) -> timedelta | None:
    """The RetryInfo a refusal carries in its rich status, as a client reads it."""
    status = rpc_status.from_call(call)
    if status is None:
        return None
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return retry.retry_delay.ToTimedelta()
    return None


def _code(call: Any) -> grpc.StatusCode:
    error = call.exception(timeout=WAIT_SECONDS)
    return grpc.StatusCode.OK if error is None else error.code()


def _shed(registry: CollectorRegistry, service: str, method: str) -> float | None:
    return registry.get_sample_value(
        "setpay_rpc_shed_total", {"service": service, "method": method}
    )


def test_every_shed_call_is_counted_and_the_admitted_ones_succeed(
    registry: CollectorRegistry, served: Callable[..., _Served]
) -> None:
    limit, offered = 4, 11
    # Fewer threads than the limit: calls queued in the pool are in flight too.
    s = served(limit, threads=2)
    calls = [s.authorize.future(b"", timeout=BLOCK_SECONDS) for _ in range(offered)]
    refused = _settled(calls, offered - limit)  # the admitted ones are blocked
    assert {_code(c) for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert _shed(registry, PG, "Authorize") == len(refused)
    s.servicer.release.set()
    admitted = [c for c in calls if c not in refused]
    assert [_code(c) for c in admitted] == [grpc.StatusCode.OK] * limit
    assert s.servicer.entered == limit
    assert _shed(registry, PG, "Authorize") == offered - limit
    # Handled calls are counted where they always were, shed ones only as shed.
    handled = {"service": PG, "method": "Authorize"}
    assert registry.get_sample_value("setpay_rpc_requests_total", handled) == limit
    assert (
        registry.get_sample_value(
            "setpay_rpc_errors_total", {"method": "Authorize", "code": "RESOURCE_EXHAUSTED"}
        )
        is None
    )


def test_a_shed_call_is_answered_while_the_pool_is_saturated(
    served: Callable[..., _Served],
) -> None:
    # Every thread is blocked and more calls wait in the pool's queue behind them: a
    # refusal queued there would not be answered until the release.
    s = served(limit=3, threads=1)
    held = [s.authorize.future(b"", timeout=BLOCK_SECONDS) for _ in range(3)]
    _entered(s, 1)
    _in_flight(s, 3)  # and the two others are in the pool's queue
    started = time.monotonic()
    # An unparseable request: a refusal does not read it (no INVALID_ARGUMENT).
    with pytest.raises(grpc.RpcError) as exc:
        s.authorize(b"\xff\xff\xff\xff\x0f", timeout=WAIT_SECONDS)
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.monotonic() - started < WAIT_SECONDS
    assert not any(c.done() for c in held)
    s.servicer.release.set()
    assert [_code(c) for c in held] == [grpc.StatusCode.OK] * 3


def test_health_is_answered_at_the_limit_and_reflection_is_shed(
    registry: CollectorRegistry, served: Callable[..., _Served]
) -> None:
    s = served(limit=2, threads=4)
    held = [s.authorize.future(b"", timeout=BLOCK_SECONDS) for _ in range(2)]
    _entered(s, 2)
    reply = s.check(health_pb2.HealthCheckRequest(service=PG), timeout=WAIT_SECONDS)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(s.channel).ServerReflectionInfo
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as exc:
        list(reflect(iter([listing]), timeout=WAIT_SECONDS))
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    reflection_name = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
    assert _shed(registry, reflection_name, "ServerReflectionInfo") == 1
    assert _shed(registry, HEALTH, "Check") is None
    s.servicer.release.set()
    assert [_code(c) for c in held] == [grpc.StatusCode.OK] * 2
    answers = list(reflect(iter([listing]), timeout=WAIT_SECONDS))
    assert PG in {service.name for service in answers[0].list_services_response.service}


def test_health_checks_past_their_reserve_are_shed(
    registry: CollectorRegistry, served: Callable[..., _Served]
) -> None:
    # One thread, held by the one call the limit admits: health checks queue behind it.
    s = served(limit=1, threads=1)
    held = s.authorize.future(b"", timeout=BLOCK_SECONDS)
    _entered(s, 1)
    flood = admission.HEALTH_RESERVE + 3
    request = health_pb2.HealthCheckRequest()
    checks = [s.check.future(request, timeout=BLOCK_SECONDS) for _ in range(flood)]
    refused = _settled(checks, 3)
    assert {_code(c) for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert _shed(registry, HEALTH, "Check") == 3
    s.servicer.release.set()
    assert _code(held) is grpc.StatusCode.OK
    served_checks = [c.result(timeout=WAIT_SECONDS) for c in checks if c not in refused]
    assert [c.status for c in served_checks] == [health_pb2.HealthCheckResponse.SERVING] * (
        admission.HEALTH_RESERVE
    )


def test_a_call_cancelled_before_it_runs_gives_its_slot_back(
    served: Callable[..., _Served],
) -> None:
    s = served(limit=2, threads=1)
    running = s.authorize.future(b"", timeout=BLOCK_SECONDS)
    _entered(s, 1)
    queued = s.authorize.future(b"", timeout=BLOCK_SECONDS)
    _in_flight(s, 2)  # it is in the pool's queue
    queued.cancel()  # type: ignore[no-untyped-call]
    _caught_up(s)  # the server has seen the cancellation
    s.servicer.release.set()
    assert _code(running) is grpc.StatusCode.OK
    # The server frees a call's slot just after sending its answer.
    _in_flight(s, 0)
    assert s.servicer.entered == 1  # the cancelled call never ran
    # Both slots are free again: two held calls are admitted, a third is shed.
    s.servicer.release.clear()
    again = [s.authorize.future(b"", timeout=BLOCK_SECONDS) for _ in range(3)]
    refused = _settled(again, 1)
    assert _code(refused[0]) is grpc.StatusCode.RESOURCE_EXHAUSTED
    s.servicer.release.set()
    assert [_code(c) for c in again if c not in refused] == [grpc.StatusCode.OK] * 2


def test_the_pool_counts_until_the_call_is_done_however_it_ends() -> None:
    pool = admission.InFlightPool(threads=1)
    gate = threading.Event()
    first = pool.submit(gate.wait, WAIT_SECONDS)
    second = pool.submit(gate.wait, WAIT_SECONDS)
    assert pool.in_flight == 2
    assert second.cancel()  # never ran
    assert pool.in_flight == 1
    gate.set()
    first.result(WAIT_SECONDS)
    deadline = time.monotonic() + WAIT_SECONDS
    while pool.in_flight:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pool.shutdown()


def test_a_refusal_tells_the_client_when_to_retry(served: Callable[..., _Served]) -> None:
    s = served(limit=1, threads=1)
    held = s.authorize.future(b"", timeout=BLOCK_SECONDS)
    _entered(s, 1)
    with pytest.raises(grpc.RpcError) as exc:
        s.authorize(b"", timeout=WAIT_SECONDS)
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = _retry_delay(exc.value)
    assert delay is not None, "no google.rpc.RetryInfo in the refusal's status"
    assert delay == timedelta(seconds=admission.SHED_RETRY_SECONDS)
    assert exc.value.details() == admission.SHED_DETAILS
    s.servicer.release.set()
    assert _code(held) is grpc.StatusCode.OK


def test_past_the_shed_backlog_calls_get_grpcs_refusal_at_once_and_go_uncounted(
    registry: CollectorRegistry,
    served: Callable[..., _Served],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The refusals' thread is held at its first refusal, as a flood starving it of the GIL
    # would hold it: without the backstop, every refusal after it would wait too.
    answer = admission.Refusal.__call__
    unheld = threading.Event()

    def held(refusal: Any, requests: Any, context: grpc.ServicerContext) -> None:
        unheld.wait(BLOCK_SECONDS)
        answer(refusal, requests, context)

    monkeypatch.setattr(admission.Refusal, "__call__", held)
    monkeypatch.setattr(server, "SHED_BACKLOG", 4)  # a small flood does
    s = served(limit=1, threads=1)
    try:
        admitted = s.authorize.future(b"", timeout=BLOCK_SECONDS)
        _entered(s, 1)
        waiting = admission.HEALTH_RESERVE + server.SHED_BACKLOG  # refusals let wait
        past = 5
        flood = [s.authorize.future(b"", timeout=BLOCK_SECONDS) for _ in range(waiting + past)]
        bare = _settled(flood, past)
        assert [_code(c) for c in bare] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * past
        assert [_retry_delay(c) for c in bare] == [None] * past  # gRPC's, not ours
        unheld.set()
        ours = [c for c in flood if c not in bare]
        assert [_code(c) for c in ours] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * waiting
        delay = timedelta(seconds=admission.SHED_RETRY_SECONDS)
        assert [_retry_delay(c) for c in ours] == [delay] * waiting
        # Counted: exactly the calls the server's own refusal answered.
        assert _shed(registry, PG, "Authorize") == waiting
        s.servicer.release.set()
        assert _code(admitted) is grpc.StatusCode.OK
    finally:
        unheld.set()


@pytest.mark.parametrize("grace", [None, WAIT_SECONDS])  # stopped at once, or drained
def test_the_servers_threads_end_when_it_stops(
    served: Callable[..., _Served], grace: float | None
) -> None:
    before = set(threading.enumerate())
    s = served(limit=1, threads=2)
    held = s.authorize.future(b"", timeout=BLOCK_SECONDS)
    _entered(s, 1)
    with pytest.raises(grpc.RpcError) as exc:  # a refusal starts the refusals' thread
        s.authorize(b"", timeout=WAIT_SECONDS)
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    s.servicer.release.set()
    assert _code(held) is grpc.StatusCode.OK
    started = [t for t in threading.enumerate() if t not in before]
    pools = [t for t in started if t.name.startswith(("rpc_", "shed_"))]
    assert {t.name.split("_")[0] for t in pools} == {"rpc", "shed"}
    assert s.server.stop(grace).wait(WAIT_SECONDS)
    deadline = time.monotonic() + WAIT_SECONDS
    while alive := [t.name for t in pools if t.is_alive()]:
        assert time.monotonic() < deadline, f"still running after the server stopped: {alive}"
        time.sleep(0.01)
