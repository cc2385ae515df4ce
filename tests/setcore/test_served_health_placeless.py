"""The threads a connection's Watch sends hold once places are given up.

A stream taken back in place of a stalled send gives the connection's place up after
0.25 s and its send goes on without one. That sender kept the stream for every later
status: a peer taking each status in 0.6 s while the monitor set one every 0.3 s never
let its stream go idle, so the sender never returned, and one connection came to hold a
thread for each of its streams (24 at once where the bound is 16). A sender without a
place keeps its stream for the send under way only; the stream then queues for a place
as any other. And a placeless send's end frees no place (only its sender's count); a
stream handed back is queued again whatever place its sender held.
"""

from __future__ import annotations

import math
import time

import pytest
from grpc_health.v1 import health_pb2

from setcore import watch_sends
from setcore.watch_sends import PEER_SENDERS, Senders
from tests.setcore.slow_peer_support import SERVING, Call, Counted, Gauge, books_emptied, over
from tests.setcore.zero_window_support import until

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STALL_SECONDS = 1.0
READ_SECONDS = 0.6  # each status taken in 0.6 s: inside the stall limit
SET_EVERY = 0.3  # the monitor's sets, scaled as the stall limit is
READERS = 6 * PEER_SENDERS


def test_slow_readers_behind_stalled_streams_hold_no_more_threads_than_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    gauge = Gauge()
    order: list[Call] = []
    stalled = [Counted("balancer", order, gauge) for _ in range(PEER_SENDERS)]
    readers = [Counted("balancer", order, gauge, READ_SECONDS) for _ in range(READERS)]
    streams = [call.stream() for call in [*stalled, *readers]]
    senders = Senders()
    senders.run(streams)
    seq = 1
    end = time.monotonic() + STALL_SECONDS + 4.0
    while time.monotonic() < end:
        time.sleep(SET_EVERY)
        seq += 1
        senders.run([s for s in streams if s.offer(SERVING, seq)])
    bound = PEER_SENDERS * STALL_SECONDS / watch_sends.STALLED_PLACE_SECONDS
    most = gauge.most
    for call in readers:
        call.let()
    deadline = time.monotonic() + 10
    while not over(readers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(call.cancelled.is_set() for call in readers)
    assert most <= bound, f"{most} sends at once on one connection (bound {bound:.0f})"


def test_the_books_are_empty_once_a_stalled_connection_is_drained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Catches a placeless send's end counted as a place freed."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    quiet = [Call("quiet", []) for _ in range(4 * PEER_SENDERS)]
    senders = Senders()
    senders.run([call.stream() for call in quiet])
    deadline = time.monotonic() + 15
    while not all(c.cancelled.is_set() for c in quiet) and time.monotonic() < deadline:
        time.sleep(0.05)
    books_emptied(senders)


def test_a_stream_handed_back_by_a_sender_holding_a_place_is_sent_to_again() -> None:
    """A stream comes back handed back (busy, for the senders to queue again) only from a
    send whose place the watch gave up, under the lock that marks its sender placeless;
    were another route ever opened, one marked so by no give-up of the senders, its
    sender, holding a place, once left it busy in no queue: told nothing more, ended at
    no stop. Any stream handed back is queued again."""
    reader = Call("balancer", [], takes=0.0)  # the peer takes each status at once
    stream = reader.stream()
    take = reader.send

    def send(response: object) -> None:
        if not reader.told:  # the first send, under way: a later status recorded
            assert stream.give_place_up(math.inf, stream.sender)  # by no senders' give-up
            assert not stream.offer(NOT_SERVING, 10)  # busy: queued by no one else
        take(response)

    stream.send = send
    senders = Senders()
    senders.run([stream])
    until(lambda: len(reader.told) == 2 and not stream.busy, "the later status was sent")
    assert reader.told == [SERVING, NOT_SERVING]
    books_emptied(senders)
