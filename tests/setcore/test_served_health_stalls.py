"""A Watch stream whose peer takes nothing (an HTTP/2 window of 0) stalls no one but
itself, and only for ``SEND_STALL_SECONDS``: its call is then cancelled.

Before, sends of one name were ordered by a lock of the name's held across each send, and
a send completes only once the peer's flow control lets it out: one such Watch for ""
held that lock for good, so every later ``set`` of "" waited with it (a bank worker's
health stayed SERVING while its probes failed, and its drain never ended) and every later
Watch for "" held a thread of the server's pool waiting for it, until the server answered
nothing. A real gRPC server on port 0 and a raw HTTP/2 client (``zero_window_support``);
and ``ServedHealth`` alone with a send that waits, for a stream that lags."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from setcore import watch_sends
from setcore.served_health import ServedHealth
from tests.setcore.zero_window_support import WAIT_SECONDS, ZeroWindowClient, health_server, until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Sends stall sooner here (the module's: 2 s).
STALL_SECONDS = 0.5
# The server's pool: fewer threads than the Watches a test opens behind the stalled one.
THREADS = 2


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServedHealth, int]]:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    with health_server(THREADS) as served:
        yield served


def test_a_stalled_watch_holds_neither_sets_nor_other_watches_and_is_cancelled(
    served: tuple[ServedHealth, int],
) -> None:
    servicer, port = served
    peer = ZeroWindowClient(port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        peer.watch("")
        until(lambda: peer.headers_seen == 1, "the stalled Watch was answered its headers")
        assert peer.data_seen == 0  # its status is stuck behind its window

        setter = threading.Thread(target=servicer.set, args=("", NOT_SERVING), daemon=True)
        setter.start()
        setter.join(WAIT_SECONDS)
        assert not setter.is_alive(), "a set waited for the stalled stream"

        # More Watches for "" than the server has threads: each is answered.
        stub = health_pb2_grpc.HealthStub(channel)
        overall = health_pb2.HealthCheckRequest(service="")
        watches = [stub.Watch(overall, timeout=WAIT_SECONDS) for _ in range(THREADS + 1)]
        assert [next(w).status for w in watches] == [NOT_SERVING] * (THREADS + 1)
        assert stub.Check(overall, timeout=WAIT_SECONDS).status == NOT_SERVING
        for watch in watches:
            watch.cancel()

        until(lambda: peer.resets == 1, "the stalled Watch's call was cancelled")
        until(lambda: servicer.open_watches == 0, "the stalled Watch left")
    finally:
        channel.close()
        peer.close()


def test_a_stream_that_lags_is_told_the_latest_status_after_its_send_in_order() -> None:
    """Statuses set while a send on a stream is under way are not sent by their setters
    (they would wait with it): the newest is sent after it, by the sender sending."""
    servicer = ServedHealth()
    release = threading.Event()
    sent: list[int] = []
    first_send_began = threading.Event()

    def send(response: object) -> None:
        if response is None:
            return
        if not sent:
            first_send_began.set()
            release.wait(WAIT_SECONDS)  # the peer takes nothing yet
        sent.append(cast(health_pb2.HealthCheckResponse, response).status)

    class _Context:
        def add_callback(self, callback: Callable[[], None]) -> bool:
            return True

        def peer(self) -> str:
            return "ipv4:127.0.0.1:1"

    context = cast(grpc.ServicerContext, _Context())
    servicer.Watch(health_pb2.HealthCheckRequest(), context, send)  # returns at once
    assert first_send_began.wait(WAIT_SECONDS)
    for status in (NOT_SERVING, SERVING, NOT_SERVING):
        servicer.set("", status)  # returns at once: the stream's send is under way
    assert sent == []
    release.set()
    until(lambda: len(sent) >= 2, "the lagging stream was told the newest status")
    assert sent == [SERVING, NOT_SERVING]  # its first status, then the newest
    servicer.set("", SERVING)
    until(lambda: len(sent) >= 3, "the stream was told the next status")
    assert sent == [SERVING, NOT_SERVING, SERVING]


def test_the_stall_watch_starts_again_once_it_has_ended(
    served: tuple[ServedHealth, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stall watch ends once it has had nothing to watch for ``SENDER_IDLE_SECONDS``,
    and the next send starts it again: a stream that stalls after a quiet spell is still
    cancelled."""
    monkeypatch.setattr(watch_sends, "SENDER_IDLE_SECONDS", 0.5)
    servicer, port = served
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    peer: ZeroWindowClient | None = None
    try:
        before = set(threading.enumerate())
        reader = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=WAIT_SECONDS
        )
        assert next(reader).status == SERVING

        def started() -> list[threading.Thread]:
            return [t for t in set(threading.enumerate()) - before if t.name == "health-stalls"]

        # The Watch's thread starts the stall watch after the sender, which may have told
        # the stream its status first: looked for until it is there, not once.
        until(lambda: bool(started()), "the first Watch started the stall watch")
        watches = started()
        assert len(watches) == 1, "the first Watch started one stall watch"
        reader.cancel()
        until(lambda: servicer.open_watches == 0, "the Watch left")
        watches[0].join(WAIT_SECONDS)
        assert not watches[0].is_alive(), "the stall watch ended with nothing to watch"

        peer = ZeroWindowClient(port)
        peer.watch("")
        until(lambda: peer.headers_seen == 1, "the stalling Watch was answered its headers")
        until(lambda: peer.resets == 1, "the Watch stalling after a quiet spell was cancelled")
        until(lambda: servicer.open_watches == 0, "the stalled Watch left")
    finally:
        channel.close()
        if peer is not None:
            peer.close()


def test_a_stalled_watch_for_a_name_not_served_is_cancelled_too(
    served: tuple[ServedHealth, int],
) -> None:
    """Its SERVICE_UNKNOWN is a send like any other: a stream kept under no name is
    still under the stall watch (a merchant's stop waited its whole grace for one)."""
    servicer, port = served
    peer = ZeroWindowClient(port)
    try:
        peer.watch("setpay.v1.NotServedHere")
        until(lambda: peer.headers_seen == 1, "the stalled Watch was answered its headers")
        assert servicer.watchers() == {}  # kept under no name
        until(lambda: peer.resets == 1, "the stalled Watch's call was cancelled")
        until(lambda: servicer.open_watches == 0, "the stalled Watch left")
    finally:
        peer.close()


def test_a_sender_with_nothing_to_send_ends(
    served: tuple[ServedHealth, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The servicer's senders are started for sends and end once idle, not kept."""
    monkeypatch.setattr(watch_sends, "SENDER_IDLE_SECONDS", 0.2)
    _, port = served

    def senders() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "health-sends")

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=WAIT_SECONDS)
        assert next(watch).status == SERVING
        until(lambda: senders() == 0, "the idle sender ended")
        watch.cancel()
    finally:
        channel.close()
