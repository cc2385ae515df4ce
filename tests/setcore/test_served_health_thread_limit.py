"""A health sender thread, or the senders' stall watch, that fails to start (``RuntimeError:
can't start new thread``, as under a container's pids limit) is started again later: no
stream is left unsent, no stalled send uncancelled, no Watch held open for good.

Before, the senders counted a thread running before it started: a sender that did not
start was counted for good, so that no later stream was ever given one, and a watch that
did not start left no stalled send ever cancelled again (a stop with one ran to its
grace); and the Watch whose hand-over raised had not yet added its close callback, so it
stayed among the open streams, counted against ``MAX_WATCHES``, for good. A real gRPC
server on port 0 and clients that read or read nothing (``zero_window_support``);
``ServedHealth`` alone with a hand-over that raises."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from setcore import watch_sends
from setcore.served_health import OVERALL_HEALTH, ServedHealth
from tests.setcore.zero_window_support import WAIT_SECONDS, ZeroWindowClient, health_server, until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Sends stall sooner here (the module's: 2 s).
STALL_SECONDS = 0.5
REFUSAL = "can't start new thread"


class _ThreadLimit:
    """``threading.Thread.start`` refused for the next ``refusals`` threads named
    ``name``, as the process's thread limit would; how many it refused."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, refusals: int) -> None:
        self.name = name
        self.left = refusals
        self.refused = 0
        start = threading.Thread.start

        def limited(thread: threading.Thread) -> None:
            if thread.name == self.name and self.left:
                self.left -= 1
                self.refused += 1
                raise RuntimeError(REFUSAL)
            start(thread)

        monkeypatch.setattr(threading.Thread, "start", limited)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServedHealth, int]]:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    with health_server(4) as served:
        yield served


def _first_status(port: int) -> int:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=OVERALL_HEALTH), timeout=WAIT_SECONDS
        )
        status = next(watch).status
        watch.cancel()
        return int(status)
    finally:
        channel.close()


def test_a_sender_that_did_not_start_is_started_again_and_the_watch_told(
    served: tuple[ServedHealth, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Watch's own hand-over's sender, and the stall watch's first try again, are
    refused: the watch tries again, and the stream is told its status, with no ``set``."""
    servicer, port = served
    limit = _ThreadLimit(monkeypatch, "health-sends", refusals=2)
    assert _first_status(port) == SERVING
    assert limit.refused == 2
    assert _first_status(port) == SERVING  # and the next stream has a sender too
    until(lambda: servicer.open_watches == 0, "every stream left")


def test_a_stall_watch_that_did_not_start_is_started_again_and_cancels_a_stalled_send(
    served: tuple[ServedHealth, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, port = served
    limit = _ThreadLimit(monkeypatch, "health-stalls", refusals=1)
    assert _first_status(port) == SERVING
    # The watch is refused as the stream is handed over, but started after its sender,
    # which may have told the stream its status first.
    until(lambda: limit.refused == 1, "the stall watch's start was refused")
    until(lambda: servicer.open_watches == 0, "the Watch left")
    peer = ZeroWindowClient(port)
    try:
        peer.watch(OVERALL_HEALTH)
        until(lambda: peer.resets == 1, "the stalled Watch's call was cancelled")
        until(lambda: servicer.open_watches == 0, "the stalled Watch left")
    finally:
        peer.close()


class _Context:
    """A call's context keeping its close callbacks, run when the call is over."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def end(self) -> None:
        for callback in self.callbacks:
            callback()


def test_a_watch_whose_hand_over_raised_leaves_when_its_call_is_over() -> None:
    def refused(streams: object) -> None:
        raise RuntimeError(REFUSAL)

    servicer = ServedHealth(run=refused)
    context = _Context()
    with pytest.raises(RuntimeError, match=REFUSAL):
        servicer.Watch(
            health_pb2.HealthCheckRequest(service=OVERALL_HEALTH),
            cast(grpc.ServicerContext, context),
            lambda response: None,
        )
    assert servicer.open_watches == 1  # until gRPC ends the failed call
    context.end()
    assert servicer.open_watches == 0
    assert servicer.watchers() == {}
