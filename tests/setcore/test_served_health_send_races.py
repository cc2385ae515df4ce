"""The senders' watch against a send that ends just as it acts on it.

The watch reads a send under way (under the senders' lock), then gives its place up or
cancels its call; the send's thread needs only its stream's lock, so the send may end in
between. A give-up that came after the send completed once left ``placeless`` set on the
idle stream: its next sender, holding a place, handed it back all the same, it was queued
nowhere, and it stayed busy for good, told no later status, nor ended at a stop. A
give-up or a cancel that came after the next send began acted on that send, begun just
now. Each interleaving is forced: the peer takes the send at the moment the watch acts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from grpc_health.v1 import health_pb2

from setcore import watch_sends
from setcore.watch_sends import PEER_SENDERS, STALLED_PLACE_SECONDS, Senders
from setcore.watch_stream import WatchStream
from tests.setcore.slow_peer_support import SERVING, Call

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STALL_SECONDS = 1.0
WAIT_SECONDS = 5.0  # for what takes milliseconds, on a loaded machine too


class OneAtATime(Call):
    """A call whose peer takes one send each time the test lets it."""

    def send(self, response: object) -> None:
        try:
            super().send(response)
        finally:
            self.gate.clear()


def _until(done: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while not done() and time.monotonic() < deadline:
        time.sleep(0.001)
    return done()


def _taken_back_after_stalls(reader: Call) -> tuple[Senders, WatchStream]:
    """The reader's stream, queued behind ``PEER_SENDERS`` streams of its connection whose
    peer reads nothing: taken back from aside once they stall, to give its place up
    ``STALLED_PLACE_SECONDS`` into its send."""
    stalled = [Call(reader.connection, []) for _ in range(PEER_SENDERS)]
    stream = reader.stream()
    senders = Senders()
    senders.run([*(call.stream() for call in stalled), stream])
    return senders, stream


def _wrapped(
    monkeypatch: pytest.MonkeyPatch, name: str, stream: WatchStream, first: Callable[[], None]
) -> list[tuple[object, float]]:
    """``WatchStream``'s ``name`` (what the watch does to a send) made to run ``first``
    before it does it to ``stream`` the first time; what it returned for ``stream``
    each time, with how long the send under way had been under way."""
    real = getattr(WatchStream, name)
    called: list[tuple[object, float]] = []

    def wrapped(self: WatchStream, *args: float) -> object:
        if self is stream and not called:
            first()
        result = real(self, *args)
        if self is stream:
            called.append((result, time.monotonic() - self.context.began[-1]))  # type: ignore[attr-defined]
        return result

    monkeypatch.setattr(WatchStream, name, wrapped)
    return called


def test_a_give_up_as_the_send_completes_loses_no_later_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    reader = Call("balancer", [])
    senders, stream = _taken_back_after_stalls(reader)

    def completed() -> None:  # the peer takes its status; the stream goes idle
        reader.let()
        assert _until(lambda: not stream.busy)

    called = _wrapped(monkeypatch, "give_place_up", stream, completed)
    assert _until(lambda: bool(called))
    for seq, status in ((10, NOT_SERVING), (11, SERVING)):
        if stream.offer(status, seq):
            senders.run([stream])
        _until(lambda: not stream.busy)
    if stream.end():
        senders.run([stream])
    _until(lambda: len(reader.told) == 4 and not stream.busy)
    told = (reader.told, stream.busy)
    assert told == ([SERVING, NOT_SERVING, SERVING, None], False), f"told, busy: {told}"
    with senders._lock:
        assert senders._per_peer == {} and senders._placeless_per_peer == {}


def test_a_give_up_as_the_next_send_begins_leaves_that_send_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    reader = OneAtATime("balancer", [])
    senders, stream = _taken_back_after_stalls(reader)

    def next_begun() -> None:  # the peer takes its status, and the next send begins
        stream.offer(NOT_SERVING, 10)
        reader.let()
        assert _until(lambda: len(reader.began) == 2)

    called = _wrapped(monkeypatch, "give_place_up", stream, next_begun)
    assert _until(lambda: bool(called))
    time.sleep(2 * STALLED_PLACE_SECONDS)  # that send's own give-up, at its time
    early = [into for given, into in called if given is not False and into < 0.1]
    assert not early, f"a send gave its place up {early[0]:.3f} s into it"
    reader.let()
    assert _until(lambda: len(reader.told) == 2)
    if stream.end():
        senders.run([stream])
    reader.let()
    assert _until(lambda: len(reader.told) == 3 and not stream.busy)
    assert reader.told == [SERVING, NOT_SERVING, None]
    assert not reader.cancelled.is_set()


def test_a_cancel_as_the_stalled_send_completes_leaves_the_call_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    reader = OneAtATime("balancer", [])
    stream = reader.stream()

    def next_begun() -> None:  # the peer takes its status at its limit; the next begins
        stream.offer(NOT_SERVING, 10)
        reader.let()
        assert _until(lambda: len(reader.began) == 2)

    called = _wrapped(monkeypatch, "cancel", stream, next_begun)
    senders = Senders()
    senders.run([stream])
    assert _until(lambda: bool(called))
    time.sleep(0.1)
    assert not reader.cancelled.is_set(), "a send cancelled just as it began"
    reader.let()
    assert _until(lambda: len(reader.told) == 2)
    if stream.end():
        senders.run([stream])
    reader.let()
    assert _until(lambda: len(reader.told) == 3 and not stream.busy)
    assert reader.told == [SERVING, NOT_SERVING, None]
