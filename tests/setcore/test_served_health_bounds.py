"""``ServedHealth``'s bounds on Watch streams, driven as gRPC drives it (a context and a
send callback): at most ``MAX_WATCHES`` open at once, whatever their names, one past that
refused RESOURCE_EXHAUSTED with nothing sent or kept; and ``end_watches``, which ends
every open stream and any that starts after it. Before, a peer held as many Watch
streams as it opened (no client certificate is needed on the merchant's port nor the
CA's), and a server's stop waited its whole grace period for any one left open."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2

from setcore import served_health
from setcore.served_health import ServedHealth

SERVED = "setpay.v1.MerchantService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# A small bound, so that a test reaches it with a handful of streams.
BOUND = 3
END = -1  # what a stream records when it is ended (its send given None)


class _Aborted(Exception):
    """What grpcio's ``abort`` raises: the behaviour ends there."""


class _Context:
    """A call's context that keeps its close callbacks, and records an abort."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise _Aborted

    def end(self) -> None:
        for callback in self.callbacks:
            callback()


class _Stream:
    """One Watch call: its context and what was sent on it (``END`` for its end)."""

    def __init__(self, servicer: ServedHealth, name: str) -> None:
        self.context = _Context()
        self.sent: list[int] = []
        with contextlib.suppress(_Aborted):
            servicer.Watch(
                health_pb2.HealthCheckRequest(service=name),
                cast(grpc.ServicerContext, self.context),
                self.send,
            )

    def send(self, response: object) -> None:
        self.sent.append(
            END if response is None else cast(health_pb2.HealthCheckResponse, response).status
        )


@pytest.fixture(autouse=True)
def small_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not raising where the module has no bound: the tests then fail on what is sent.
    monkeypatch.setattr(served_health, "MAX_WATCHES", BOUND, raising=False)


def _at_once(streams: Iterable[Callable[[], None]]) -> None:
    for send in streams:
        send()


def _servicer() -> ServedHealth:
    servicer = ServedHealth((SERVED,), run=_at_once)  # sends at once: read as sent
    servicer.set(SERVED, SERVING)
    return servicer


def test_a_watch_past_the_bound_is_refused_and_nothing_is_sent_or_kept() -> None:
    servicer = _servicer()
    held = [_Stream(servicer, name) for name in ("", SERVED, SERVED)]
    assert [s.sent for s in held] == [[SERVING]] * BOUND

    refused = _Stream(servicer, SERVED)
    assert refused.sent == [] and refused.context.callbacks == []
    assert refused.context.aborted == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        served_health.WATCHES_REFUSAL,
    )
    assert servicer.open_watches == BOUND
    assert servicer.watchers() == {"": 1, SERVED: 2}
    servicer.set(SERVED, NOT_SERVING)  # sent on the streams held only
    assert refused.sent == [] and held[1].sent == [SERVING, NOT_SERVING]


def test_names_not_served_count_too_and_a_stream_that_ends_frees_its_place() -> None:
    servicer = _servicer()
    unknown = [_Stream(servicer, f"not.served.{n}") for n in range(BOUND)]
    assert [s.sent for s in unknown] == [[UNKNOWN]] * BOUND
    assert servicer.watchers() == {}  # kept under no name, but open
    assert _Stream(servicer, "").sent == []  # refused

    unknown[0].context.end()
    assert servicer.open_watches == BOUND - 1
    admitted = _Stream(servicer, "")
    assert admitted.context.aborted is None and admitted.sent == [SERVING]
    assert servicer.open_watches == BOUND


def test_end_watches_ends_every_stream_and_any_after_it_once_told_its_status() -> None:
    servicer = _servicer()
    overall, served, unknown = (_Stream(servicer, n) for n in ("", SERVED, "not.served"))
    servicer.enter_graceful_shutdown()
    servicer.end_watches()
    assert overall.sent == [SERVING, NOT_SERVING, END]
    assert served.sent == [SERVING, NOT_SERVING, END]
    assert unknown.sent == [UNKNOWN, END]
    # Ended, but open until gRPC runs their close callbacks: still counted, and still
    # under the stall watch (an end may stall as a status does).
    assert servicer.open_watches == BOUND

    refused = _Stream(servicer, SERVED)  # past the bound, the ended streams counted
    assert refused.sent == [] and refused.context.aborted is not None
    for stream in (overall, served):
        stream.context.end()
    assert servicer.open_watches == 1
    later = [_Stream(servicer, SERVED) for _ in range(BOUND - 1)]
    assert [s.sent for s in later] == [[NOT_SERVING, END]] * (BOUND - 1)
    assert all(len(s.context.callbacks) == 1 and s.context.aborted is None for s in later)
    assert servicer.open_watches == BOUND
    assert servicer.watchers() == {}  # ended: kept under no name, told nothing more

    for stream in (unknown, *later):
        stream.context.end()  # gRPC runs their close callbacks once they have ended
    assert servicer.open_watches == 0 and servicer.watchers() == {}
    servicer.set("", SERVING)  # ignored, as after every graceful shutdown
    servicer.end_watches()  # a second time: nothing more is sent
    assert overall.sent == [SERVING, NOT_SERVING, END]
    assert [s.sent for s in later] == [[NOT_SERVING, END]] * (BOUND - 1)


def test_a_stream_ended_is_told_nothing_more_a_set_included() -> None:
    """Without ``enter_graceful_shutdown`` (the bank's monitor sets NOT_SERVING itself), a
    ``set`` after ``end_watches`` is not sent on an ended stream: its call has its status."""
    servicer = _servicer()
    stream = _Stream(servicer, SERVED)
    servicer.set(SERVED, NOT_SERVING)
    servicer.end_watches()
    servicer.set(SERVED, SERVING)
    assert stream.sent == [SERVING, NOT_SERVING, END]
    assert servicer.statuses()[SERVED] == SERVING
