"""Watch streams of one connection whose sends are slow but complete hold their places
like any others; only a stream taken back from aside in place of a stalled send holds
its place for a short while, and only until it is idle; that holds when it is due, not at
the stall watch's next look; and no stream is cancelled before its own stall limit.

Before, every stream taken back from aside had ``ASIDE_STALL_SECONDS`` (0.25 s): on a busy
server whose one sender lagged 0.1 s, a connection's streams past its first 4 waited
aside behind sends that were merely slow, and a slow send of theirs (a loaded process, a
pause) had them cancelled though no stream stalled: a load balancer's 10 Watches on one
connection, beside 8 busy request threads, had 6 reset. And nothing woke the stall watch
when such a send began, so its 0.25 s held only at the watch's next look, seconds later.

``Senders`` alone, with streams of ``slow_peer_support``."""

from __future__ import annotations

import time

import pytest
from grpc_health.v1 import health_pb2

from setcore import watch_sends
from setcore.watch_sends import PEER_SENDERS, Senders
from tests.setcore.slow_peer_support import SERVING, Call, over
from tests.setcore.zero_window_support import until

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# A send whose peer reads but slowly (a loaded machine, a pause): far past the time a
# stream taken back for a stall holds its place, well inside the stall limit.
SLOW_SEND_SECONDS = 1.5
# When another connection's stream is told a status (the monitor's next set), waking the
# stall watch for a look, while the slow sends are under way.
PROBE_AFTER_SECONDS = 0.4
# A stalled send whose call is cancelled returns this much later (grpcio's returns once
# its poll thread has run): the stall watch looks again before the next stream's send.
CANCEL_LAG_SECONDS = 0.3
# Stall limit for the test of places given up, shorter than the module's (2 s).
STALL_SECONDS = 1.2
# Past a place given up 0.25 s into a send, a look of the watch woken when it is due
# comes within this on a loaded machine; one not woken comes at the stall limit, or later.
PROMPT_GIVE_UP_SECONDS = 0.9
# A send's beginning is recorded just after the senders mark it begun.
EARLY_SECONDS = 0.05


def test_streams_aside_behind_slow_sends_that_complete_are_never_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """8 streams of one connection whose peer reads every status, each in 1.5 s: the
    first 4 have their sends under way (a sender each once they waited 0.1 s), the other
    4 wait aside and are taken back as those complete. No send stalls, so none is
    cancelled, though another connection's status has the stall watch look meanwhile."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", 30.0)  # none stalls for it here
    order: list[Call] = []
    balancer = [Call("balancer", order, takes=SLOW_SEND_SECONDS) for _ in range(2 * PEER_SENDERS)]
    first, aside = balancer[:PEER_SENDERS], balancer[PEER_SENDERS:]
    senders = Senders()
    senders.run([call.stream() for call in balancer])
    until(lambda: all(call.began for call in first), "the first sends were under way")
    assert not any(call.began for call in aside), "more than 4 sends of one connection"
    until(lambda: all(call.began for call in aside), "the streams aside were taken back")
    time.sleep(PROBE_AFTER_SECONDS)
    probe = Call("monitor", order)
    probe.let()
    senders.run([probe.stream()])
    until(lambda: probe.told == [SERVING], "the other connection's stream was told")
    until(lambda: over(balancer), "every stream's send was over")
    cancelled = [balancer.index(call) for call in balancer if call.cancelled.is_set()]
    assert cancelled == [], f"streams with no stall were cancelled: {cancelled}"
    assert [call.told for call in balancer] == [[SERVING]] * len(balancer)


def test_a_stream_taken_back_for_a_stalled_one_gives_its_place_up_when_that_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """12 streams of one connection whose peer reads nothing: the first 4 stall and are
    cancelled; the next 4, taken back in their place, give their places up about 0.25 s
    into their sends, though the stall watch last looked before they began (the cancelled
    sends returned later) and nothing else happens to wake it, so the last 4 begin then,
    not at the second 4's stall. No stream is cancelled before its own stall limit."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    order: list[Call] = []
    quiet = [Call("quiet", order, cancel_lag=CANCEL_LAG_SECONDS) for _ in range(3 * PEER_SENDERS)]
    Senders().run([call.stream() for call in quiet])
    until(lambda: all(call.cancelled.is_set() for call in quiet), "every stream was cancelled")
    second, last = quiet[PEER_SENDERS : 2 * PEER_SENDERS], quiet[2 * PEER_SENDERS :]
    waited = round(max(call.began[0] for call in last) - min(call.began[0] for call in second), 2)
    assert waited < PROMPT_GIVE_UP_SECONDS, f"the last 4 began {waited} s after the second 4"
    early = [
        round(call.cancelled_at - call.began[0], 2)
        for call in quiet
        if call.cancelled_at - call.began[0] < STALL_SECONDS - EARLY_SECONDS
    ]
    assert early == [], f"streams cancelled before their own stall limit, into their sends: {early}"
    assert not any(call.told for call in quiet)


def test_a_stream_taken_back_for_a_stalled_one_holds_its_place_like_any_other_once_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reading stream taken back from aside in place of a cancelled stall holds its
    place for a short while for the sends it was taken back for only: once idle, a later
    send that takes longer than that (but completes) holds its place till it completes,
    and a stream of its connection aside behind it waits for that."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", 0.5)  # the stallers, sooner
    order: list[Call] = []
    stallers = [Call("balancer", order) for _ in range(PEER_SENDERS)]
    reader = Call("balancer", order)
    reader.let()
    stream = reader.stream()
    senders = Senders()
    senders.run([*(call.stream() for call in stallers), stream])
    until(lambda: reader.told == [SERVING], "the reader was told its first status")
    until(lambda: all(call.cancelled.is_set() for call in stallers), "the stallers were cancelled")
    until(lambda: not stream.busy, "the reader's stream was idle")

    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", 30.0)  # none stalls for it now
    reader.gate.clear()
    reader.takes = watch_sends.STALLED_PLACE_SECONDS + 0.5
    assert stream.offer(NOT_SERVING, 2)
    held = [Call("balancer", order) for _ in range(PEER_SENDERS - 1)]
    waiter = Call("balancer", order)
    waiter.let()
    senders.run([stream, *(call.stream() for call in held), waiter.stream()])
    until(lambda: over([reader, waiter]), "the reader's and the waiter's sends were over")
    assert reader.told == [SERVING, NOT_SERVING]
    assert waiter.began[0] >= reader.done[1], "an idle stream's later send gave its place up"
    for call in held:
        call.let()
    until(lambda: over(held), "every stream's send was over")
    assert not any(call.cancelled.is_set() for call in [reader, waiter, *held])


def test_a_stream_taken_back_from_aside_is_sent_before_streams_queued_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection's 4 sends under way and a fifth stream aside; two streams of another
    connection queued while every sender is busy. The first send that completes frees
    its sender for the stream aside first, which waited longest."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", 30.0)  # none stalls here
    order: list[Call] = []
    balancer = [Call("balancer", order) for _ in range(PEER_SENDERS + 1)]
    held, aside = balancer[:PEER_SENDERS], balancer[PEER_SENDERS]
    aside.let()
    senders = Senders()
    senders.run([call.stream() for call in balancer])
    until(lambda: all(call.began for call in held), "the first sends were under way")
    # No stream queued from now on gets a sender of its own: they wait for these.
    monkeypatch.setattr(watch_sends, "PROMPT_SEND_SECONDS", 30.0)
    others = [Call("monitor", order) for _ in range(2)]
    for call in others:
        call.let()
    senders.run([call.stream() for call in others])
    assert not aside.began and not any(call.began for call in others)
    held[0].let()
    until(lambda: over([aside, *others]), "the waiting streams were told")
    assert order[PEER_SENDERS:] == [aside, *others]
    for call in held[1:]:
        call.let()
    until(lambda: over(balancer), "every stream's send was over")
    assert not any(call.cancelled.is_set() for call in order)
