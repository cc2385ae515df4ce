"""Streams of one connection taken back from aside in place of its stalled sends: a reading
stream among them is never cancelled, however many of its connection's places stalled
before it and however slowly a busy server sends (within the stall limit); a connection
whose every stream stalls is still drained, ``PEER_SENDERS`` streams taken back at a
time, with its threads bounded.

Before, a stream taken back in place of a stalled send was cancelled if its send took
0.25 s, and the next taken back for it had 0.25 s too: one stalled stream among 31
readers whose sends took 0.5 s reset 7 of them. A fix passed the short limit on only
while no send of the connection completed for 2 s; but with the connection's 4 places all
stalled no send completes, and 4 stalled streams ahead of 28 such readers still reset
all 28 (a review's finding). Now such a stream's send only gives its place up after
0.25 s, and is cancelled at its own stall limit, as any other.

``Senders`` alone, with streams of ``slow_peer_support``."""

from __future__ import annotations

import pytest

from setcore import watch_sends
from setcore.watch_sends import PEER_SENDERS, Senders
from tests.setcore.slow_peer_support import SERVING, Call, Counted, Gauge, over
from tests.setcore.zero_window_support import until

# The stall limit here, shorter than the module's (2 s), for a short test.
STALL_SECONDS = 1.0
# A reader's send on a busy server: far past the 0.25 s a stream taken back for a stall
# holds its place, well inside the stall limit.
READ_SECONDS = 0.5
# Readers behind the stalled streams: 3 rounds of the connection's places.
READERS = 3 * PEER_SENDERS
# Stalled streams ahead of them: fewer than the connection's places, all of them (the
# review's case), one more, and two rounds.
STALLED = [1, PEER_SENDERS, PEER_SENDERS + 1, 2 * PEER_SENDERS]
# One connection whose every stream stalls: 6 rounds of its places.
QUIET = 6 * PEER_SENDERS
# Past the module's bound (a place's holders change at most every 0.25 s, and each send
# is over at its stall limit), a loaded machine's late cancels may hold a thread more per
# place.
LATE_PER_PLACE = 1


@pytest.mark.parametrize("stalled_count", STALLED)
def test_reading_streams_behind_stalled_ones_of_their_connection_are_never_cancelled(
    stalled_count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stalled_count`` streams of one connection read nothing, then 12 read, each send
    taking 0.5 s (a busy server): only the stalled streams are cancelled, and every
    reader is told its status. While some of the connection's places hold readers,
    whose sends complete, no stream taken back gives its place up: never more than 4
    sends at once."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    order: list[Call] = []
    gauge = Gauge()
    stalled = [Counted("balancer", order, gauge) for _ in range(stalled_count)]
    readers = [Counted("balancer", order, gauge, READ_SECONDS) for _ in range(READERS)]
    Senders().run([call.stream() for call in [*stalled, *readers]])
    until(lambda: over([*stalled, *readers]), "every stream's send was over")
    cut = [readers.index(call) for call in readers if call.cancelled.is_set()]
    assert cut == [], f"{len(cut)} of {READERS} reading streams cancelled: {cut}"
    assert all(call.cancelled.is_set() for call in stalled)
    assert [call.told for call in readers] == [[SERVING]] * READERS
    if stalled_count < PEER_SENDERS:
        assert gauge.most <= PEER_SENDERS, f"{gauge.most} sends at once"


def test_a_connection_whose_every_stream_stalls_drains_with_bounded_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """24 streams of one connection whose peer reads nothing: after the first 4 stall,
    the others are taken back 4 at a time as the places are given up, so all have begun
    within about 0.25 s a round; each is cancelled at its own stall limit, never sooner;
    and never more sends are under way at once than 4 per 0.25 s of that limit."""
    monkeypatch.setattr(watch_sends, "SEND_STALL_SECONDS", STALL_SECONDS)
    order: list[Call] = []
    gauge = Gauge()
    quiet = [Counted("quiet", order, gauge) for _ in range(QUIET)]
    Senders().run([call.stream() for call in quiet])
    until(lambda: all(call.cancelled.is_set() for call in quiet), "every stream was cancelled")
    rounds = QUIET // PEER_SENDERS - 1
    began = max(call.began[0] for call in quiet) - min(call.began[0] for call in quiet)
    # The first round's stall, then 0.25 s a round, with a loaded machine's lag each.
    assert began < STALL_SECONDS + rounds * (watch_sends.STALLED_PLACE_SECONDS + 0.1) + 0.5, (
        f"the last stream began {began:.2f} s after the first"
    )
    early = [
        round(call.cancelled_at - call.began[0], 2)
        for call in quiet
        if call.cancelled_at - call.began[0] < STALL_SECONDS - 0.05
    ]
    assert early == [], f"streams cancelled before their own stall limit, into their sends: {early}"
    per_place = STALL_SECONDS / watch_sends.STALLED_PLACE_SECONDS + LATE_PER_PLACE
    assert gauge.most <= PEER_SENDERS * per_place, f"{gauge.most} sends at once"
    assert gauge.most > PEER_SENDERS, "no place was given up"
