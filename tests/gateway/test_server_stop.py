"""``Server.stop`` lets its pools go and ends its reflection streams once, however many
stops it is given: a drain's stop with a grace and, when calls outlast it, its cut
(``RunningBank.drain``) are two stops of one server.

A real gRPC server on port 0 whose one method blocks on an Event holds a call in flight for
as long as the test wants; waits poll under a deadline: no fixed sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from gateway.admission import InFlightPool
from gateway.server import EndingReflection, Server

SERVICE = "setpay.test.Held"
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0
# Longer than any test: a call still blocked after this is a bug, not a slow machine.
BLOCK_SECONDS = 60.0


class _CountingPool(InFlightPool):
    """The server's pool, counting the shutdowns it is given."""

    def __init__(self, threads: int) -> None:
        super().__init__(threads)
        self.shutdowns = 0

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.shutdowns += 1
        super().shutdown(wait, cancel_futures=cancel_futures)


class _CountingRefusals(futures.ThreadPoolExecutor):
    """The refusals' pool, counting the shutdowns it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="shed")
        self.shutdowns = 0

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.shutdowns += 1
        super().shutdown(wait, cancel_futures=cancel_futures)


class _CountingReflection(EndingReflection):
    """Reflection, counting the times its streams are ended."""

    def __init__(self, lane: futures.ThreadPoolExecutor) -> None:
        super().__init__([SERVICE], lane)
        self.ends = 0

    def end_streams(self) -> None:
        self.ends += 1
        super().end_streams()


class _Held:
    """A server whose one call blocks until ``gate`` is set, with counting pools."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.pool = _CountingPool(threads=2)
        self.refusals = _CountingRefusals()
        self.reflection = _CountingReflection(self.pool.streams)
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Hold": grpc.unary_unary_rpc_method_handler(self._hold)}
        )
        grpc_server = grpc.server(self.pool, handlers=[handler, self.reflection.handler()])
        self.port = grpc_server.add_insecure_port("127.0.0.1:0")
        grpc_server.start()
        self.server = Server(grpc_server, self.pool, self.refusals, self.reflection)

    def _hold(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.gate.wait(BLOCK_SECONDS)
        return b""


@pytest.fixture
def held() -> Iterator[_Held]:
    served = _Held()
    try:
        yield served
    finally:
        served.gate.set()
        served.server.stop(None).wait(WAIT_SECONDS)


def _released_after(before: set[threading.Thread]) -> None:
    """Wait for the releases a stop began on a thread of their own (``release_pools``)."""
    for thread in set(threading.enumerate()) - before:
        if thread.name == "server-stop":
            thread.join(WAIT_SECONDS)
            assert not thread.is_alive(), "a release still waits after the server stopped"


def test_a_stop_that_cuts_its_calls_releases_once(held: _Held) -> None:
    """The grace ends with a call in flight: the cut is a second stop, and the pools are
    let go and the streams ended once, not once per stop."""
    before = set(threading.enumerate())
    with grpc.insecure_channel(f"127.0.0.1:{held.port}") as channel:
        hold = channel.unary_unary(
            f"/{SERVICE}/Hold", request_serializer=None, response_deserializer=None
        )
        call = hold.future(b"", timeout=WAIT_SECONDS)
        deadline = time.monotonic() + WAIT_SECONDS
        while held.server.in_flight != 1:
            assert time.monotonic() < deadline, "the call never reached the pool"
            time.sleep(0.01)
        graced = held.server.stop(BLOCK_SECONDS)
        assert not graced.is_set()  # the call holds the stop for its grace
        assert held.server.stop(None).is_set()  # the cut: gRPC cancels the call
        with pytest.raises(grpc.RpcError) as cut:
            call.result(WAIT_SECONDS)
        assert cut.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert graced.wait(WAIT_SECONDS)  # every stop's event is set once the server stopped
    _released_after(before)
    assert (held.pool.shutdowns, held.refusals.shutdowns) == (1, 1)
    assert held.reflection.ends == 1


def test_a_stop_within_its_grace_releases_once(held: _Held) -> None:
    """No call in flight: one stop, one release, once gRPC has stopped."""
    before = set(threading.enumerate())
    assert held.server.stop(BLOCK_SECONDS).wait(WAIT_SECONDS)
    _released_after(before)
    assert (held.pool.shutdowns, held.refusals.shutdowns) == (1, 1)
    assert held.reflection.ends == 1
