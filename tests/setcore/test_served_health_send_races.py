"""The senders' watch against a send that ends just as it acts on it.

The watch reads a send under way (under the senders' lock), then gives its place up or
cancels its call; the send's thread needs only its stream's lock, so the send may end in
between. A give-up that came after the send completed once left ``placeless`` set on the
idle stream: its next sender, holding a place, handed it back all the same, it was queued
nowhere, and it stayed busy for good, told no later status, nor ended at a stop. A
give-up or a cancel that came after the next send began acted on that send, begun just
now. Each interleaving is forced: the peer takes the send at the moment the watch acts.

The sender, too, once let go of its stream's lock between the check for a place given up
after a send and the pick of the next, the send over but its start still recorded: a look
of the watch there cancelled a call whose peer had taken its status in time, or gave up
the place of a send already over. That interleaving is forced by holding the sender
there, as a preemption would.

A sender that had let its stream go idle named it still until it next took the senders'
lock; a ``set`` in between queued the stream again, another sender took it, and the watch
read it through both. A give-up through the first sender's entry gave up the other's
place; that send completing before the watch reached the other entry, it came back handed
back to a sender that had given up no place, and was queued by none, busy for good. That
interleaving is forced too: the first sender held after its stream's return, and the peer
taking its status just as the watch gives the place up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

import pytest
from grpc_health.v1 import health_pb2

from setcore import watch_sends
from setcore.watch_sends import PEER_SENDERS, STALLED_PLACE_SECONDS, Senders
from setcore.watch_stream import WatchStream
from tests.setcore.slow_peer_support import SERVING, Call, books_emptied

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
    books_emptied(senders)


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


class HeldAfterFirstSend(Call):
    """A call whose peer takes its first status ``first_takes`` seconds into its send, a
    next one offered on its stream as it does, and every later status at once; the thread
    that made that first send is held, as it next lets go of the stream's lock, until
    ``held_until`` seconds after the send began (``resumed`` then)."""

    def __init__(self, connection: str, first_takes: float, held_until: float) -> None:
        super().__init__(connection, [], first_takes)
        self.held_until = held_until
        self.resumed = threading.Event()
        self.to_hold: threading.Thread | None = None
        self.watched: WatchStream | None = None
        self.taken_back = False  # whether its stream was taken back from aside

    def stream(self) -> WatchStream:
        stream = super().stream()
        stream.lock = _HoldingLock(self)  # type: ignore[assignment]
        self.watched = stream
        return stream

    def send(self, response: object) -> None:
        super().send(response)
        if len(self.told) == 1 and self.watched is not None:
            self.takes = 0.0
            self.taken_back = self.watched.aside
            self.watched.offer(NOT_SERVING, 10)
            self.to_hold = threading.current_thread()


class _HoldingLock:
    """A stream's lock that holds the thread ``call`` names once it has let go."""

    def __init__(self, call: HeldAfterFirstSend) -> None:
        self.lock = threading.Lock()
        self.call = call

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.lock.release()
        call = self.call
        if call.to_hold is threading.current_thread():
            call.to_hold = None
            time.sleep(max(0.0, call.began[0] + call.held_until - time.monotonic()))
            call.resumed.set()


def test_a_send_over_is_not_cancelled_while_its_sender_picks_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    # Taken half-way to its limit; the sender held a quarter past it, and resumed a
    # quarter before the next send's own limit.
    call = HeldAfterFirstSend("balancer", STALL_SECONDS / 2, STALL_SECONDS * 1.25)
    stream = call.stream()
    Senders().run([stream])
    assert call.resumed.wait(WAIT_SECONDS)
    assert not call.cancelled.is_set(), (
        f"a call cancelled {call.cancelled_at - call.began[0]:.3f} s after its send began,"
        f" its peer having taken it at {call.done[0] - call.began[0]:.3f} s"
    )
    assert _until(lambda: len(call.told) == 2 and not stream.busy)
    assert call.told == [SERVING, NOT_SERVING]
    assert not call.cancelled.is_set()


def test_a_send_over_gives_no_place_up_while_its_sender_picks_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    place = 0.5  # the short place, long enough for a send to complete within it
    monkeypatch.setattr(watch_sends, "STALLED_PLACE_SECONDS", place)
    # Taken 0.4 s into its place of 0.5 s; the sender held till 0.2 s past it, and
    # resumed 0.2 s before the next send's own give-up.
    call = HeldAfterFirstSend("balancer", 0.8 * place, 1.4 * place)
    stalled = [Call(call.connection, []) for _ in range(PEER_SENDERS)]
    stream = call.stream()
    given: list[tuple[float, float]] = []  # the send's start recorded, when given up
    real = WatchStream.give_place_up

    def give_place_up(self: WatchStream, *args: object) -> bool:
        since = self.since
        given_up = real(self, *args)  # type: ignore[arg-type]
        if self is stream and given_up and since is not None:
            given.append((since, time.monotonic()))
        return given_up

    monkeypatch.setattr(WatchStream, "give_place_up", give_place_up)
    senders = Senders()
    senders.run([*(stalled_call.stream() for stalled_call in stalled), stream])
    assert call.resumed.wait(STALL_SECONDS + WAIT_SECONDS)
    assert call.taken_back, "not taken back from aside for the stalled sends"
    assert _until(lambda: len(call.told) == 2 and not stream.busy)
    over = [when - since for since, when in given if since <= call.done[0] <= when]
    assert not over, f"a place given up {over[0]:.3f} s into a send its peer took in time"
    assert call.told == [SERVING, NOT_SERVING]
    books_emptied(senders)


def test_a_sender_done_with_its_stream_gives_no_place_up_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    reader = OneAtATime("balancer", [])
    stream = reader.stream()
    returned: list[bool] = []  # what each sender's run of the stream returned
    release = threading.Event()
    real_call = WatchStream.__call__

    def call(self: WatchStream) -> bool:
        handed_back = real_call(self)
        if self is stream:
            returned.append(handed_back)
            if len(returned) == 1:  # the first sender, held before its next look at the books
                release.wait(WAIT_SECONDS)
        return handed_back

    real_give_up = WatchStream.give_place_up
    given: list[bool] = []

    def give_place_up(self: WatchStream, *args: object) -> bool:
        given_up = real_give_up(self, *args)  # type: ignore[arg-type]
        if self is stream and not given:
            given.append(given_up)
            reader.let()  # the peer takes its status as the watch looks at the senders
            _until(lambda: len(returned) == 2)
        return given_up

    monkeypatch.setattr(WatchStream, "__call__", call)
    monkeypatch.setattr(WatchStream, "give_place_up", give_place_up)
    senders = Senders()
    reader.let()
    senders.run([stream])
    try:
        assert _until(lambda: len(returned) == 1), "the first send was not made"
        # Idle, its first sender held: queued again for a later status, and taken by
        # another sender, to hold its place for a short while (as one taken back from
        # aside in place of a stalled send does).
        stream.taken_from_aside()
        assert stream.offer(NOT_SERVING, 10)
        senders.run([stream])
        assert _until(lambda: bool(given)), "no place given up"
    finally:
        release.set()
    reader.takes = 0.0  # every later status taken at once
    assert _until(lambda: len(reader.told) == 2 and not stream.busy), (
        f"told {reader.told}, busy {stream.busy}, handed back {returned}"
    )
    if stream.offer(SERVING, 11):
        senders.run([stream])
    _until(lambda: len(reader.told) == 3 and not stream.busy)
    if stream.end():
        senders.run([stream])
    _until(lambda: len(reader.told) == 4 and not stream.busy)
    told = (reader.told, stream.busy)
    assert told == ([SERVING, NOT_SERVING, SERVING, None], False), f"told, busy: {told}"
    books_emptied(senders)
