"""Watch streams of one connection whose sends are slow but complete keep the full stall
limit; only a stream taken back from aside in place of a stalled, cancelled send has the
short one, and only until it is idle; and that short limit holds when it is due, not at
the stall watch's next look.

Before, every stream taken back from aside had ``ASIDE_STALL_SECONDS`` (0.25 s): on a busy
server whose one sender lagged 0.1 s, a connection's streams past its first 4 waited
aside behind sends that were merely slow, and a slow send of theirs (a loaded process, a
pause) had them cancelled though no stream stalled: a load balancer's 10 Watches on one
connection, beside 8 busy request threads, had 6 reset. And nothing woke the stall watch
when such a send began, so its 0.25 s held only at the watch's next look, seconds later.

``Senders`` alone, with streams whose peer (a connection, as gRPC's ``peer()`` names it)
takes each status when the test lets it, after a set time, or never, and whose call's
cancel ends the send under way by raising, as grpcio's does."""

from __future__ import annotations

import itertools
import math
import threading
import time
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2

from setcore import watch_sends
from setcore.watch_sends import PEER_SENDERS, Senders, WatchStream
from tests.setcore.zero_window_support import WAIT_SECONDS, until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# A send whose peer reads but slowly (a loaded machine, a pause): far past the short stall
# limit, well inside the module's.
SLOW_SEND_SECONDS = 1.5
# When another connection's stream is told a status (the monitor's next set), waking the
# stall watch for a look, while the slow sends are under way.
PROBE_AFTER_SECONDS = 0.4
# A stalled send whose call is cancelled returns this much later (grpcio's returns once
# its poll thread has run): the stall watch looks again before the next stream's send.
CANCEL_LAG_SECONDS = 0.3
# Over the short stall limit, a look of the watch woken when it is due comes within this
# on a loaded machine; one not woken comes at its idle end (``SENDER_IDLE_SECONDS``, 5 s).
PROMPT_CANCEL_SECONDS = 1.5


class _Call:
    """One Watch stream's call and peer, on ``connection``: each send is taken once the
    test lets it (``let``), after ``takes`` seconds if set, or never (for as long as a
    test waits for anything); a cancel ends the send under way (it raises ``cancel_lag``
    seconds later). Records, in ``order`` too, when each send began, what was taken, and
    when the call was cancelled."""

    def __init__(
        self,
        connection: str,
        order: list[_Call],
        takes: float | None = None,
        cancel_lag: float = 0.0,
    ) -> None:
        self.connection = connection
        self.name = f"{connection} {next(_NUMBERS)}"
        self.order = order
        self.takes = takes
        self.cancel_lag = cancel_lag
        self.gate = threading.Event()
        self.cancelled = threading.Event()
        self.cancelled_at = math.inf  # never
        self.began: list[float] = []
        self.told: list[int | None] = []

    def __repr__(self) -> str:
        return self.name

    def peer(self) -> str:
        return self.connection

    def cancel(self) -> None:
        self.cancelled_at = time.monotonic()
        self.cancelled.set()

    def let(self) -> None:
        self.gate.set()

    def send(self, response: object) -> None:
        began = time.monotonic()
        self.began.append(began)
        self.order.append(self)
        # Never: for as long as a test waits for anything.
        takes = WAIT_SECONDS if self.takes is None else self.takes
        while not self.cancelled.is_set() and not self.gate.is_set():
            if time.monotonic() - began >= takes:
                break
            self.cancelled.wait(0.005)
        if self.cancelled.is_set():
            time.sleep(self.cancel_lag)
            raise RuntimeError("the call was cancelled")
        if isinstance(response, health_pb2.HealthCheckResponse):
            self.told.append(response.status)
        else:
            self.told.append(None)  # the end

    def stream(self) -> WatchStream:
        """The call's stream, to be told SERVING first."""
        return WatchStream(self.send, cast(grpc.ServicerContext, self), SERVING, 1, False)


_NUMBERS = itertools.count()


def _over(calls: list[_Call]) -> bool:
    """Whether every call's sends are over: each told a status or cancelled."""
    return all(call.told or call.cancelled.is_set() for call in calls)


def test_streams_aside_behind_slow_sends_that_complete_are_never_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """8 streams of one connection whose peer reads every status, each in 1.5 s: the
    first 4 have their sends under way (a sender each once they waited 0.1 s), the other
    4 wait aside and are taken back as those complete. No send stalls, so none is
    cancelled, though another connection's status has the stall watch look meanwhile."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", 30.0)  # none stalls for it here
    order: list[_Call] = []
    balancer = [_Call("balancer", order, takes=SLOW_SEND_SECONDS) for _ in range(2 * PEER_SENDERS)]
    first, aside = balancer[:PEER_SENDERS], balancer[PEER_SENDERS:]
    senders = Senders()
    senders.run([call.stream() for call in balancer])
    until(lambda: all(call.began for call in first), "the first sends were under way")
    assert not any(call.began for call in aside), "more than 4 sends of one connection"
    until(lambda: all(call.began for call in aside), "the streams aside were taken back")
    time.sleep(PROBE_AFTER_SECONDS)
    probe = _Call("monitor", order)
    probe.let()
    senders.run([probe.stream()])
    until(lambda: probe.told == [SERVING], "the other connection's stream was told")
    until(lambda: _over(balancer), "every stream's send was over")
    cancelled = [balancer.index(call) for call in balancer if call.cancelled.is_set()]
    assert cancelled == [], f"streams with no stall were cancelled: {cancelled}"
    assert [call.told for call in balancer] == [[SERVING]] * len(balancer)


def test_a_stream_taken_back_for_a_stalled_one_is_cancelled_when_its_short_limit_is_due() -> None:
    """8 streams of one connection whose peer reads nothing: the first 4 are cancelled
    after 2 s, and each of the other 4, taken back in their place, within about its
    short limit of its send beginning, though the stall watch last looked before it
    began (the cancelled sends returned later) and nothing else happens to wake it."""
    order: list[_Call] = []
    quiet = [_Call("quiet", order, cancel_lag=CANCEL_LAG_SECONDS) for _ in range(2 * PEER_SENDERS)]
    Senders().run([call.stream() for call in quiet])
    until(lambda: all(call.cancelled.is_set() for call in quiet), "every stream was cancelled")
    waited = [round(call.cancelled_at - call.began[0], 2) for call in quiet[PEER_SENDERS:]]
    assert all(took < PROMPT_CANCEL_SECONDS for took in waited), (
        f"streams taken back were cancelled {waited} s into their sends"
    )
    assert not any(call.told for call in quiet)


def test_a_stream_taken_back_for_a_stalled_one_has_the_full_limit_once_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reading stream taken back from aside in place of a cancelled stall has the short
    limit for the sends it was taken back for only: once idle, a later send that takes
    longer than that (but completes) is not cancelled."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", 0.5)  # the stallers, sooner
    # A prompt send's limit here, on a loaded machine; its later slow send is slower.
    monkeypatch.setattr(watch_sends, "ASIDE_STALL_SECONDS", 1.0)
    order: list[_Call] = []
    stallers = [_Call("balancer", order) for _ in range(PEER_SENDERS)]
    reader = _Call("balancer", order)
    reader.let()
    stream = reader.stream()
    senders = Senders()
    senders.run([*(call.stream() for call in stallers), stream])
    until(lambda: reader.told == [SERVING], "the reader was told its first status")
    until(lambda: all(call.cancelled.is_set() for call in stallers), "the stallers were cancelled")
    until(lambda: not stream.busy, "the reader's stream was idle")

    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", 30.0)  # none stalls for it now
    reader.gate.clear()
    reader.takes = watch_sends.ASIDE_STALL_SECONDS + 0.5
    assert stream.offer(NOT_SERVING, 2)
    senders.run([stream])
    until(lambda: len(reader.told) == 2 or reader.cancelled.is_set(), "the send was over")
    assert not reader.cancelled.is_set(), "an idle stream kept the short stall limit"
    assert reader.told == [SERVING, NOT_SERVING]


def test_a_stream_taken_back_from_aside_is_sent_before_streams_queued_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection's 4 sends under way and a fifth stream aside; two streams of another
    connection queued while every sender is busy. The first send that completes frees
    its sender for the stream aside first, which waited longest."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", 30.0)  # none stalls here
    order: list[_Call] = []
    balancer = [_Call("balancer", order) for _ in range(PEER_SENDERS + 1)]
    held, aside = balancer[:PEER_SENDERS], balancer[PEER_SENDERS]
    aside.let()
    senders = Senders()
    senders.run([call.stream() for call in balancer])
    until(lambda: all(call.began for call in held), "the first sends were under way")
    # No stream queued from now on gets a sender of its own: they wait for these.
    monkeypatch.setattr(watch_sends, "PROMPT_SEND_SECONDS", 30.0)
    others = [_Call("monitor", order) for _ in range(2)]
    for call in others:
        call.let()
    senders.run([call.stream() for call in others])
    assert not aside.began and not any(call.began for call in others)
    held[0].let()
    until(lambda: _over([aside, *others]), "the waiting streams were told")
    assert order[PEER_SENDERS:] == [aside, *others]
    for call in held[1:]:
        call.let()
    until(lambda: _over(balancer), "every stream's send was over")
    assert not any(call.cancelled.is_set() for call in order)


def test_a_stalled_stream_among_slow_readers_passes_no_short_limit_along() -> None:
    """One stream of a connection stalls, its 31 neighbours read, each send in 0.5 s (a
    busy server): the stream taken back for the stalled one keeps the module's limit, as
    the connection's other sends complete, so no cancel of a slow reader chains another.
    Only the stalled stream is cancelled."""
    order: list[_Call] = []
    stalled = _Call("balancer", order)
    readers = [_Call("balancer", order, takes=0.5) for _ in range(31)]
    Senders().run([stalled.stream()] + [call.stream() for call in readers])
    until(lambda: _over([stalled, *readers]), "every stream's send was over")
    cut = [readers.index(call) for call in readers if call.cancelled.is_set()]
    assert cut == [], f"reading streams cancelled: {cut}"
    assert stalled.cancelled.is_set()
    assert [call.told for call in readers] == [[SERVING]] * len(readers)
