"""``ServedHealth`` alone, driven as gRPC drives it (a context and a send callback), for the
moments a real server makes hard to reach: a Watch whose call is already over when it
runs, one that comes before the server has published a status, and a stream that ends
while a status is being sent. The servers' own tests (``test_health_watch_names``,
``test_merchant_health_names``) use real servers, ``test_health_servicer_own`` a
grpc_health that renamed what the servicer once reached into. Sends run at once here
(``_at_once``), on the caller's thread, so that what a stream was sent can be read as
soon as a call returns; the servicer's own senders are the real servers' tests'."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health, health_pb2

from setcore.served_health import ServedHealth

SERVED = "setpay.v1.MerchantService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 5.0


def _at_once(streams: Iterable[Callable[[], None]]) -> None:
    """Run the streams' sends now, instead of on the servicer's senders."""
    for send in streams:
        send()


class _Context:
    """A call's context: over already (``over``), or keeping its close callbacks."""

    def __init__(self, over: bool = False) -> None:
        self.over = over
        self.callbacks: list[Callable[[], None]] = []

    def add_callback(self, callback: Callable[[], None]) -> bool:
        if self.over:
            return False
        self.callbacks.append(callback)
        return True

    def end(self) -> None:
        self.over = True
        for callback in self.callbacks:
            callback()

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code


def _watch(servicer: ServedHealth, name: str, context: _Context) -> list[int]:
    sent: list[int] = []

    def send(response: object) -> None:
        if response is not None:
            sent.append(cast(health_pb2.HealthCheckResponse, response).status)

    servicer.Watch(
        health_pb2.HealthCheckRequest(service=name), cast(grpc.ServicerContext, context), send
    )
    return sent


def test_a_watch_whose_call_is_already_over_is_not_kept() -> None:
    servicer = ServedHealth((SERVED,), run=_at_once)
    assert _watch(servicer, SERVED, _Context(over=True)) == [UNKNOWN]  # no status set yet
    assert _watch(servicer, "", _Context(over=True)) == [SERVING]
    assert servicer.watchers() == {}


def test_a_watch_before_the_first_status_is_told_it_when_set_and_leaves_when_ended() -> None:
    servicer = ServedHealth((SERVED,), run=_at_once)
    context = _Context()
    sent = _watch(servicer, SERVED, context)
    servicer.set(SERVED, SERVING)
    assert sent == [UNKNOWN, SERVING]
    assert servicer.watchers() == {SERVED: 1}
    context.end()
    assert servicer.watchers() == {}  # not even the name, once its last stream ended


def test_a_name_not_served_is_told_unknown_kept_under_no_name_and_cannot_be_set() -> None:
    """Its stream is counted against the cap while open (a close callback), but its name
    is kept nowhere."""
    servicer = ServedHealth((SERVED,), run=_at_once)
    context = _Context()
    assert _watch(servicer, "setpay.v1.Other", context) == [UNKNOWN]
    assert len(context.callbacks) == 1 and servicer.watchers() == {}
    assert servicer.open_watches == 1
    context.end()
    assert servicer.open_watches == 0
    with pytest.raises(ValueError, match="not served here"):
        servicer.set("setpay.v1.Other", SERVING)
    assert servicer.statuses() == {"": SERVING}
    servicer.serve(["setpay.v1.Other"])
    servicer.set("setpay.v1.Other", SERVING)
    assert servicer.served == {"", SERVED, "setpay.v1.Other"}


def test_a_blocking_watch_is_refused() -> None:
    """gRPC gives a non-blocking Watch its send callback; without one there is no stream
    to answer on, and nothing is kept."""
    servicer = ServedHealth()
    with pytest.raises(TypeError, match="non-blocking"):
        servicer.Watch(health_pb2.HealthCheckRequest(), cast(grpc.ServicerContext, _Context()))
    assert servicer.watchers() == {}


def _check(servicer: ServedHealth, name: str) -> tuple[int, grpc.StatusCode | None]:
    context = _Context()
    reply = servicer.Check(
        health_pb2.HealthCheckRequest(service=name), cast(grpc.ServicerContext, context)
    )
    return reply.status, getattr(context, "code", None)


def test_check_answers_as_grpc_healths_did() -> None:
    """The whole server ("") SERVING from the start; NOT_FOUND, with an empty reply, for a
    name with no status yet or not served."""
    empty = health_pb2.HealthCheckResponse.UNKNOWN
    servicer = ServedHealth((SERVED,), run=_at_once)
    assert _check(servicer, "") == (SERVING, None)
    assert _check(servicer, SERVED) == (empty, grpc.StatusCode.NOT_FOUND)
    assert _check(servicer, "setpay.v1.Other") == (empty, grpc.StatusCode.NOT_FOUND)
    servicer.set(SERVED, NOT_SERVING)
    assert _check(servicer, SERVED) == (NOT_SERVING, None)
    assert servicer.statuses() == {"": SERVING, SERVED: NOT_SERVING}


def test_every_set_is_sent_a_repeat_too_in_order() -> None:
    servicer = ServedHealth((SERVED,), run=_at_once)
    servicer.set(SERVED, SERVING)
    sent = _watch(servicer, SERVED, _Context())
    for status in (SERVING, NOT_SERVING, SERVING):
        servicer.set(SERVED, status)
    assert sent == [SERVING, SERVING, NOT_SERVING, SERVING]


def test_graceful_shutdown_sends_not_serving_and_ignores_later_sets() -> None:
    servicer = ServedHealth((SERVED,), run=_at_once)
    servicer.set(SERVED, SERVING)
    overall, served = _watch(servicer, "", _Context()), _watch(servicer, SERVED, _Context())
    servicer.enter_graceful_shutdown()
    servicer.set(SERVED, SERVING)
    servicer.enter_graceful_shutdown()  # once only
    assert (overall, served) == ([SERVING, NOT_SERVING], [SERVING, NOT_SERVING])
    assert servicer.statuses() == {"": NOT_SERVING, SERVED: NOT_SERVING}


def test_watch_is_grpcios_non_blocking_behaviour_in_a_subclass_too() -> None:
    """grpcio gives a send callback only to a behaviour so marked; a Watch of a subclass
    (the bank's ``WatchEndingHealth`` had one) is the behaviour it is given."""

    class Sub(ServedHealth):
        def Watch(self, *args: object) -> None:
            pass

    for servicer in (ServedHealth(), Sub()):
        assert getattr(servicer.Watch, "experimental_non_blocking", False) is True


def test_grpc_healths_servicer_is_not_what_it_is_built_on() -> None:
    """Nothing of grpc_health's servicer (whose private names a release may change) is
    inherited: only grpc.health.v1's generated base."""
    assert health.HealthServicer not in ServedHealth.__mro__
    servicer = ServedHealth((SERVED,), run=_at_once)
    assert not hasattr(servicer, "_server_status") and not hasattr(
        servicer, "_send_response_callbacks"
    )


def test_a_stream_ending_while_a_status_is_sent_waits_for_nothing() -> None:
    """grpcio runs a stream's close callback in its poll thread, and a send waits for that
    thread to complete its write. A stream that ends while a ``set`` sends on another must
    not wait for that ``set``: with grpc_health's one lock around both, the poll thread
    waited for the lock, the send for the poll thread, and the server answered no more."""
    servicer = ServedHealth((SERVED,), run=_at_once)
    servicer.set(SERVED, SERVING)
    ending = _Context()
    _watch(servicer, SERVED, ending)
    poll_thread_waited: list[bool] = []

    def send(response: object) -> None:
        # The write completes only once the poll thread has run the other's close callback.
        if cast(health_pb2.HealthCheckResponse, response).status == NOT_SERVING:
            poll_thread = threading.Thread(target=ending.end)
            poll_thread.start()
            poll_thread.join(WAIT_SECONDS)
            poll_thread_waited.append(poll_thread.is_alive())

    servicer.Watch(
        health_pb2.HealthCheckRequest(service=SERVED),
        cast(grpc.ServicerContext, _Context()),
        send,
    )
    servicer.set(SERVED, NOT_SERVING)
    assert poll_thread_waited == [False]
    assert servicer.watchers() == {SERVED: 1}  # the ended stream left; the sender stays
