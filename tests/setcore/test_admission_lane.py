"""``Admission`` and ``InFlightPool`` with streams on the pool's lane, driven as grpcio
drives them (handlers given to the interceptor, behaviours submitted to the pool), without
a server: streams held on the lane take no place among the calls, yet a stream past the
lane's threads or past the calls' limit is shed; and a call that cannot be on the lane
(its request is no stream) is admitted without its behaviour being looked into."""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Iterator
from concurrent import futures
from typing import Any, cast

import grpc
import pytest

from setcore.admission import STREAM_THREADS, Admission, InFlightPool

LIMIT = 2
AUTHORIZE = "/setpay.v1.PaymentGatewayService/Authorize"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0

_Details = namedtuple("_Details", "method invocation_metadata")


def _unary(request: Any, context: Any) -> None:
    return None


class _OnLane:
    """A request-streaming behaviour grpcio runs on ``lane`` (as reflection's is)."""

    def __init__(self, lane: futures.ThreadPoolExecutor) -> None:
        self.experimental_thread_pool = lane

    def __call__(self, requests: Any, context: Any) -> None:
        return None


class _Pool:
    """An ``InFlightPool`` and its admission; ``hold`` keeps work running until the end."""

    def __init__(self) -> None:
        self.pool = InFlightPool(threads=LIMIT + 1)
        self.admission = Admission(self.pool, LIMIT, lambda service, method: None)
        self.release = threading.Event()
        self.futures: list[futures.Future[bool]] = []
        self.lane_stream = grpc.stream_stream_rpc_method_handler(_OnLane(self.pool.streams))

    def hold(self, submit: Any, count: int) -> None:
        self.futures += [submit(self.release.wait, WAIT_SECONDS) for _ in range(count)]

    def admits(self, path: str, handler: grpc.RpcMethodHandler) -> bool:  # type: ignore[type-arg]
        details = cast(grpc.HandlerCallDetails, _Details(path, ()))
        return self.admission.intercept_service(lambda _: handler, details) is handler

    def close(self) -> None:
        self.release.set()
        futures.wait(self.futures, WAIT_SECONDS)
        self.pool.shutdown()
        self.admission.refusals.shutdown()


@pytest.fixture
def held() -> Iterator[_Pool]:
    p = _Pool()
    try:
        yield p
    finally:
        p.close()


def test_streams_on_the_lane_are_counted_apart_from_the_calls(held: _Pool) -> None:
    held.hold(held.pool.streams.submit, STREAM_THREADS)
    assert held.pool.streams_in_flight == STREAM_THREADS
    assert held.pool.in_flight == held.pool.calls_in_flight == 0
    held.hold(held.pool.submit, 1)
    assert (held.pool.in_flight, held.pool.streams_in_flight) == (1, STREAM_THREADS)


def test_streams_held_on_the_lane_leave_the_calls_their_whole_limit(held: _Pool) -> None:
    unary = grpc.unary_unary_rpc_method_handler(_unary)
    held.hold(held.pool.streams.submit, STREAM_THREADS)
    for _ in range(LIMIT):
        assert held.admits(AUTHORIZE, unary)
        held.hold(held.pool.submit, 1)
    assert not held.admits(AUTHORIZE, unary)  # the calls' limit still holds


def test_a_lane_stream_is_shed_past_the_lanes_threads_or_the_calls_limit(held: _Pool) -> None:
    assert held.admits(REFLECTION, held.lane_stream)
    held.hold(held.pool.streams.submit, STREAM_THREADS)
    assert not held.admits(REFLECTION, held.lane_stream)  # no thread of the lane free
    # A request-streaming call on the pool is a call like any other.
    assert held.admits(AUTHORIZE, grpc.stream_unary_rpc_method_handler(_unary))
    held.release.set()
    futures.wait(held.futures, WAIT_SECONDS)
    held.release.clear()
    held.hold(held.pool.submit, LIMIT)
    assert held.pool.streams_in_flight == 0
    assert not held.admits(REFLECTION, held.lane_stream)  # the worker is at its limit


class _Looked:
    """A unary behaviour that records each look at its thread pool."""

    def __init__(self) -> None:
        self.looks = 0

    @property
    def experimental_thread_pool(self) -> None:
        self.looks += 1

    def __call__(self, request: Any, context: Any) -> None:
        return None


def test_a_call_whose_request_is_no_stream_is_admitted_without_a_look_at_its_pool(
    held: _Pool,
) -> None:
    """Only a request-streaming behaviour is on the lane: for every other call (the hot
    path: each Authorize, each health Check) the look costs and tells nothing."""
    for make in (grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler):
        behaviour = _Looked()
        assert held.admits(AUTHORIZE, make(behaviour))
        assert behaviour.looks == 0
