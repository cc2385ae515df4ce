"""How a health Watch stream's statuses reach its peer (``setcore.served_health``'s
streams): each stream orders its own sends, and the servicer's own threads make them, so
that no caller waits for a peer, and no peer that takes nothing delays another's status.

A send completes only once the peer's HTTP/2 flow control lets the status out, and a peer
may keep its window shut for as long as it likes (one that opened a Watch with a window
of 0, or never read its stream): the send then waits for good, and holds the thread that
made it. grpcio's send callback has no other form. So:

Each stream orders its own sends (``setcore.watch_stream.WatchStream``): one thread at a
time sends what is due on it, the latest status only, then its end.

No caller sends (``Senders``): ``set``, ``end_watches`` and Watch itself record what a
stream is to be told and queue the stream; the servicer's threads send. A setter once
sent on each idle stream itself, and 20 streams whose peer took one status and nothing
after made one ``set`` take 41 s. One sender drains the queue, every stream in turn
(sends to peers that read take well under a millisecond each, and one thread woken for
all of them costs least); a second is woken only when none is awake.

No stream waits behind another connection's stalled one for long. With a fixed pool of
senders (32, taken in order), a peer that kept opening Watch streams and reading nothing
held every sender in turn, each for the ``SEND_STALL_SECONDS`` before its call was
cancelled, and every other stream's status waited behind the queue of its streams: a
load balancer's was told 2 of 30 changes in 30 s beside 248 such streams, and a stop ran
to its grace period. Now a stream that has waited ``PROMPT_SEND_SECONDS`` for a sender
gets one of its own, and so does every stream queued with it (``Senders._widen``): the
senders it waited behind are stalled, or as good as, and a stalled sender costs nothing
but its thread. Threads are bounded all the same: one peer (one connection, as gRPC's
``peer()`` names it, not one host: a balancer and a peer that stalls may share an
address behind a NAT or a proxy) has at most ``PEER_SENDERS`` places, sends under way
that hold one; its other streams wait aside, for no sender, and each of its sends that
holds a place and ends (completed, or cancelled as stalled), or gives its place up
(below), takes back the oldest of them (``Senders._sent``, ``Senders._give_up_places``):
a send that gave its place up took back for it then, and its end takes back nothing. So
a connection whose sends complete holds at most ``PEER_SENDERS`` threads, one whose every
send stalls at most ``PEER_SENDERS`` for each ``STALLED_PLACE_SECONDS`` of its
``SEND_STALL_SECONDS`` (32), and all of them never more than the server holds Watch
streams open.

A stream is cancelled for its own stall only, never with a neighbour's, and never before
its own send has waited ``SEND_STALL_SECONDS``. HTTP/2's flow control is per stream, so
streams of one connection whose peer reads (a load balancer multiplexing its Watches,
gRPC's client-side health checking on an application's connection) take their statuses
however many of their neighbours read nothing. Streams aside were once cancelled with
their connection's stalled ones: one connection with 10 reading Watches and 4 that read
nothing had all 10 cancelled, told 1 of 13 statuses, and none told NOT_SERVING at a stop.

A stream taken back from aside in place of a send of its connection that stalled
(cancelled, or gave its place up), while no send of that connection completed for
``SEND_STALL_SECONDS``, holds its place for ``STALLED_PLACE_SECONDS`` only: its
neighbour's peer took nothing for seconds, and a peer that reads takes a status in well
under a millisecond. If its send has not completed by then, the send gives the place up
and goes on, placeless, on its own thread, until it completes or its own
``SEND_STALL_SECONDS`` are up; the next stream aside is taken back in its place, so too.
What is due on the stream after that send waits for a place again, as any other's
(``WatchStream.__call__`` hands it back): once, its sender kept it for every later
status, and a peer slower than the statuses came held a thread for each of its streams.
So a connection whose every stream stalls is still drained, ``PEER_SENDERS`` streams
taken back every 0.25 s, 16 a second, each cancelled 2 s after its send began (a stop
waits for it, and for the last of them), and a reading stream there is told its status
however slowly a busy server sends it (within its 2 s). Such a send was once cancelled
at 0.25 s instead, and the stream taken back for it had 0.25 s too: a slow reader's
cancel passed the short limit to the next, and so on down the connection (one stalled
stream among 31 readers whose sends took 0.5 s each: 7 of them reset); passing it on
only while no other send of the connection completed for 2 s still did so wherever the
connection's 4 places all stalled (4 stalled streams ahead of 28 such readers: all 28
reset). One taken back in place of a send that completed, or ended
otherwise, or while the connection's other sends complete, holds its place like any
other: once every stream taken back had the short limit, so that on a busy server, whose
one sender lagged past ``PROMPT_SEND_SECONDS``, a connection's streams past its first
``PEER_SENDERS`` waited aside behind sends that were merely slow and were cancelled by
it, though none stalled (a load balancer's 10 Watches on one connection: 6 reset, beside
8 busy request threads). A stream that waits aside is told late, not never: after its
neighbours' sends (2 s for those that stall, and 0.25 s for every ``PEER_SENDERS``
stalling streams aside before it; as much as 2 s each where stalling streams are taken
back after reading ones).

A send that has not completed within ``SEND_STALL_SECONDS`` has its call cancelled, which
ends the send and frees its thread; an ended stream's too, so a stop waits on no peer for
longer. The senders' watch (``Senders._keep``) does that, and has sends give their places
up when due, and ends, as each sender does, once there has been nothing to watch for
``SENDER_IDLE_SECONDS``. A sender that takes a stream marks its sends begun and wakes the
watch if it would look later than they are due (``Senders._next``): once, nothing woke
it, and a limit of 0.25 s held only at its next look, up to 5 s later (the watch's idle
end). The watch reads a send under way, then gives its place up or cancels its call; the
send may end in between, so each is done to that send only, if still under way then
(``WatchStream.give_place_up``, ``WatchStream.cancel``): once, a give-up that came as
the send completed left the idle stream marked placeless, its next send, holding a
place, handed it back to no queue, and it was told nothing more, ended at no stop.
A sender's entry (``Senders._sending``) outlives its sends, too: from its stream's return,
idle, to its next hold of the senders' lock, a ``set`` may queue the stream again and
another sender take it. A give-up read through the old entry once gave up the other
sender's place, and, that send completing before the watch reached its own entry, the
stream came back handed back to a sender that had given up no place, queued by none.
So a stream records which sender has it (``WatchStream.handed_out``), and the watch
reads, gives up and cancels a send through that sender's entry only. What holds: a send's
place is given up only in the hold of the senders' lock that marks its own sender
placeless, so a stream comes back handed back only to a sender that gave its place up;
an entry whose stream has gone idle sees and does nothing to it, and its ``_sent`` counts
its own sends only (their place, and whether the call was cancelled: by their stall, or
before, if the stream was handed back to the senders cancelled). And ``_sent`` queues
any stream handed back, whatever its sender's place: busy, it is queued by no one else,
so a route to a stream handed back to a sender holding a place, were one ever opened,
would leave it told nothing more, ended at no stop; queued, it is sent to again.

A thread that fails to start (the process's thread limit) is not counted: the streams it
was for stay queued, and the next ``run``, or the watch's next look, starts one again.
Once, the watch counted itself running before its thread started, and a failed start left
no stalled send ever cancelled again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from setcore.watch_stream import WatchStream

#: How long one status's send may wait for its peer to take it before the stream's call
#: is cancelled (module docstring). A peer that reads takes a status of a few bytes within
#: milliseconds; one that has not for seconds takes nothing, and its stream tells it no more.
SEND_STALL_SECONDS = 2.0
#: How long a stream may wait for a sender before it, and every stream queued with it, gets
#: one of its own (module docstring). A sender draining streams whose peers read makes each
#: send in well under a millisecond (256 in some tens on a loaded 2-core machine); one
#: that has kept a stream waiting this long is stalled, or as good as. Well under the
#: second a load balancer's health may lag, and well over a loaded machine's pauses, so
#: that peers that read never have a thread started each.
PROMPT_SEND_SECONDS = 0.1
#: How long a send of a stream taken back from aside in place of a stalled one (module
#: docstring) holds its connection's place before it gives it up, if its peer has taken
#: nothing, and the next stream aside is taken back: a peer that reads takes a status in
#: well under a millisecond, and one connection's streams that all stall are taken back
#: ``PEER_SENDERS`` at a time, 16 a second (255: 16 s). The send itself is cancelled only
#: at its ``SEND_STALL_SECONDS``, as any other.
STALLED_PLACE_SECONDS = 0.25
#: Places on one peer (one connection): sends under way that hold one; its other streams
#: wait aside. A peer that reads frees each in well under a millisecond; one whose sends
#: complete holds no more threads than this, however many streams it opens, and one whose
#: sends all stall this many for each ``STALLED_PLACE_SECONDS`` of ``SEND_STALL_SECONDS``.
PEER_SENDERS = 4
#: How long a sender, or the senders' watch, with nothing to do waits for more before it
#: ends: past the bank's probe interval (1 s), so that its every-second sets reuse them.
SENDER_IDLE_SECONDS = 5.0

log = logging.getLogger("setpay.health")

#: What runs the sends of streams handed over together (``Senders.run`` unless a test
#: gives its own, which may call each stream at once).
Run = Callable[[list[WatchStream]], object]
#: A stream queued for a sender, with when it was queued.
_Queued = tuple[float, WatchStream]


def _stalls_at(stream: WatchStream, sender: object) -> float | None:
    """When ``sender``'s send under way on ``stream`` stalls (``SEND_STALL_SECONDS`` after
    it began, for every stream); None with none of its under way, or the call cancelled."""
    under_way = stream.under_way(sender)
    return None if under_way is None else under_way[0] + SEND_STALL_SECONDS


def _gives_up_at(stream: WatchStream, sender: object) -> float | None:
    """When ``sender``'s send under way on ``stream`` gives its connection's place up, if
    it has not completed (``STALLED_PLACE_SECONDS`` after it began, for a stream taken
    back for a stall only); None for any other, or with none of its under way."""
    under_way = stream.under_way(sender)
    if under_way is None or not under_way[1]:
        return None
    return under_way[0] + STALLED_PLACE_SECONDS


class Senders:
    """The servicer's own threads that send on its streams, and their watch (module
    docstring). Streams are queued once each (``WatchStream.busy``); a sender takes them
    in order, one at a time, and makes every send due on one before the next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # idle senders wait on it
        self._watching = threading.Condition(self._lock)  # the watch waits on it
        self._ready: deque[_Queued] = deque()
        # Streams of a peer with ``PEER_SENDERS`` places taken, oldest first.
        self._aside: dict[str, deque[_Queued]] = {}
        self._sending: dict[object, WatchStream] = {}  # by sender
        self._per_peer: dict[str, int] = {}  # places taken: sends under way that hold one
        # Senders whose send gave its place up (``_give_up_places``), and how many per peer.
        self._placeless: set[object] = set()
        self._placeless_per_peer: dict[str, int] = {}
        # When a send of the peer last completed, while it has sends under way or aside.
        self._completed: dict[str, float] = {}
        self._threads = 0
        # Senders waiting for work, not counting those told to wake (``_tickets``).
        self._idle = 0
        self._tickets = 0
        self._watch = False  # whether ``_keep`` runs
        # When the watch looks next, if it is waiting (inf: for work); 0 while it looks.
        self._watch_until = 0.0

    def run(self, streams: list[WatchStream]) -> None:
        """Queue ``streams`` (a ``set``'s, say) for a sender, at once: the one awake takes
        them after those queued before; with none awake, an idle one is woken or a new one
        started, once for them all."""
        for stream in streams:
            _ = stream.peer  # asked of gRPC here, not under the lock
        now = time.monotonic()
        with self._lock:
            self._ready.extend((now, stream) for stream in streams)
            start = self._wake(1) if self._threads == self._idle else 0
            watch = self._watched(now)
        self._start(start, watch)

    def _wake(self, count: int) -> int:
        # Under the lock: wake up to ``count`` idle senders; how many to start for the rest.
        woken = min(count, self._idle)
        if woken:
            self._idle -= woken
            self._tickets += woken
            self._work.notify(woken)
        self._threads += count - woken
        return count - woken

    def _watched(self, now: float) -> bool:
        # Under the lock, a stream just queued: whether the caller is to start the watch;
        # woken if it would look later than the stream's ``PROMPT_SEND_SECONDS``.
        if not self._watch:
            self._watch = True
            return True
        if now + PROMPT_SEND_SECONDS < self._watch_until:
            self._watching.notify()
        return False

    def _start(self, senders: int, watch: bool) -> bool:
        # Outside the lock: a thread's start waits for the thread to run. Whether all
        # started: those that did not are uncounted (module docstring), so that a later
        # ``run`` or look of the watch starts them again, their streams queued meanwhile.
        # The watch is started all the same when a sender was not: it is what starts one
        # again if no ``run`` comes.
        unstarted = senders
        with contextlib.suppress(RuntimeError):  # threading's "can't start new thread"
            while unstarted:
                threading.Thread(target=self._serve, name="health-sends", daemon=True).start()
                unstarted -= 1
        if watch:
            try:
                threading.Thread(target=self._keep, name="health-stalls", daemon=True).start()
                watch = False
            except RuntimeError:
                pass
        if unstarted or watch:
            with self._lock:
                self._threads -= unstarted
                if watch:
                    self._watch = False
            log.warning("health: a Watch send thread did not start; started again later")
            return False
        return True

    def _serve(self) -> None:
        """A sender: takes the next stream it may send on, sends all due on it, and so on,
        until there has been nothing for ``SENDER_IDLE_SECONDS``."""
        me = object()
        stream: WatchStream | None = None
        handed_back = False
        while True:
            with self._lock:
                if stream is not None:
                    self._sent(me, stream, handed_back)
                stream = self._next(me)
                if stream is None:
                    return
            handed_back = stream()

    def _sent(self, me: object, stream: WatchStream, handed_back: bool) -> None:
        # Under the lock: ``me``'s sends on ``stream`` are over (completed, or its call
        # cancelled). The stream, if ``handed_back`` busy (``WatchStream.__call__``), is
        # queued first, to wait for a place, whatever place ``me`` held: busy, it is
        # queued by no one else (module docstring). If they held a place (they gave none
        # up), its peer's oldest stream aside, if any, is next, ahead of it and of those
        # queued after it.
        del self._sending[me]
        peer = stream.peer
        now = time.monotonic()
        # ``me``'s sends only: the stream, gone idle, may be another sender's by now.
        cancelled = stream.cancelled_with(me)
        if not cancelled:
            self._completed[peer] = now
        if handed_back:
            self._ready.appendleft((now, stream))
        if me in self._placeless:
            self._placeless.discard(me)
            _count(self._placeless_per_peer, peer, -1)
        else:
            _count(self._per_peer, peer, -1)
            if self._take_back(peer, now, stalled=cancelled):
                return
        held = (self._per_peer, self._placeless_per_peer, self._aside)
        if not any(peer in of_peers for of_peers in held):
            self._completed.pop(peer, None)

    def _take_back(self, peer: str, now: float, stalled: bool) -> bool:
        # Under the lock, a place of ``peer`` freed: its oldest stream aside is queued
        # first, to hold its place for ``STALLED_PLACE_SECONDS`` only if it is taken back
        # for a send that ``stalled`` while no send of the connection completed for
        # ``SEND_STALL_SECONDS`` (module docstring); whether there was one.
        waiting = self._aside.get(peer)
        if not waiting:
            return False
        queued = waiting.popleft()
        if stalled and now - self._completed.get(peer, 0.0) >= SEND_STALL_SECONDS:
            queued[1].taken_from_aside()
        self._ready.appendleft(queued)
        if not waiting:
            del self._aside[peer]
        return True

    def _give_up_places(self, now: float) -> None:
        # Under the lock: each send that has held its place past ``_gives_up_at`` without
        # completing gives it up and goes on, placeless, till it completes or stalls; its
        # peer's oldest stream aside is taken back in its place (module docstring).
        for me, stream in self._sending.items():
            if me in self._placeless:
                continue
            gives_up_at = _gives_up_at(stream, me)
            if gives_up_at is None or now <= gives_up_at:
                continue
            # Given up only if that send is still under way (``give_place_up``): it may
            # have ended since it was read, and ``me`` be on to the next, or idle.
            if not stream.give_place_up(now - STALLED_PLACE_SECONDS, me):
                continue
            peer = stream.peer
            self._placeless.add(me)
            _count(self._placeless_per_peer, peer, 1)
            _count(self._per_peer, peer, -1)
            self._take_back(peer, now, stalled=True)

    def _due(self, me: object, stream: WatchStream) -> float | None:
        # Under the lock: when the watch is next to look at ``me``'s send on ``stream``:
        # its place given up (``_give_up_places``) or its call cancelled (``_stalled``).
        due = [_stalls_at(stream, me)]
        if me not in self._placeless:
            due.append(_gives_up_at(stream, me))
        return min((at for at in due if at is not None), default=None)

    def _next(self, me: object) -> WatchStream | None:
        # Under the lock: the next stream ``me`` may send on (its peer below
        # ``PEER_SENDERS`` sends under way), waiting for one while there is none; None
        # once there has been none for ``SENDER_IDLE_SECONDS`` (``me`` ends).
        idle_since: float | None = None
        while True:
            while self._ready:
                queued, stream = self._ready.popleft()
                peer = stream.peer
                under_way = self._per_peer.get(peer, 0)
                if under_way >= PEER_SENDERS:
                    self._aside.setdefault(peer, deque()).append((queued, stream))
                    continue
                self._per_peer[peer] = under_way + 1
                self._sending[me] = stream
                stream.handed_out(time.monotonic(), me)
                due = self._due(me, stream)
                if due is not None and due < self._watch_until:
                    self._watching.notify()  # it would look too late (``handed_out``)
                return stream
            now = time.monotonic()
            idle_since = now if idle_since is None else idle_since
            left = SENDER_IDLE_SECONDS - (now - idle_since)
            if left <= 0:
                self._threads -= 1
                return None
            self._idle += 1
            self._work.wait(left)
            if self._tickets:
                self._tickets -= 1  # woken: counted as awake by whoever woke it
            else:
                self._idle -= 1

    def _keep(self) -> None:
        """The senders' watch: has sends give their places up (``_give_up_places``),
        gives waiting streams senders of their own once they have waited
        ``PROMPT_SEND_SECONDS`` (``_widen``: the streams taken back so among them, whose
        wait began when they were first queued), again after a look at which one did not
        start, and cancels what has stalled (``_stalled``), each when due; ends after
        ``SENDER_IDLE_SECONDS`` with nothing."""
        idle_since: float | None = None
        while True:
            with self._lock:
                now = time.monotonic()
                self._give_up_places(now)
                start = self._widen(now)
                stalled = self._stalled(now)
                due = self._next_due()
                if due is not None:
                    idle_since = None
                    if not start and not stalled:
                        # Not sooner than a few ms: a sender just started is to take its
                        # stream before the next look.
                        self._watch_until = max(due, now + 0.005)
                        self._watching.wait(self._watch_until - now)
                        self._watch_until = 0.0
                        continue
                elif not start and not stalled:
                    idle_since = now if idle_since is None else idle_since
                    left = SENDER_IDLE_SECONDS - (now - idle_since)
                    if left <= 0:
                        self._watch = False
                        return
                    self._watch_until = float("inf")
                    self._watching.wait(left)
                    self._watch_until = 0.0
                    continue
            started = self._start(start, False)
            for me, stream in stalled:
                stream.cancel(now - SEND_STALL_SECONDS, me)  # not one begun since the look
            if not started:
                time.sleep(PROMPT_SEND_SECONDS)  # before it tries again, not in a spin

    def _widen(self, now: float) -> int:
        # Under the lock: once the oldest stream queued has waited ``PROMPT_SEND_SECONDS``,
        # a sender for each stream queued (module docstring), but for streams of a peer
        # with ``PEER_SENDERS`` sends under way or to be, which wait aside; how many to
        # start, beside the idle ones woken.
        if not self._ready or now - self._ready[0][0] < PROMPT_SEND_SECONDS:
            return 0
        kept: deque[_Queued] = deque()
        to_be = dict(self._per_peer)
        for queued, stream in self._ready:
            peer = stream.peer
            under_way = to_be.get(peer, 0)
            if under_way >= PEER_SENDERS:
                self._aside.setdefault(peer, deque()).append((queued, stream))
            else:
                to_be[peer] = under_way + 1
                kept.append((queued, stream))
        self._ready = kept
        # Awake and about to take a stream: started or woken, and not sending.
        taking = self._threads - self._idle - len(self._sending)
        return self._wake(len(kept) - taking) if len(kept) > taking else 0

    def _stalled(self, now: float) -> list[tuple[object, WatchStream]]:
        # Under the lock: the streams to cancel, each whose own send has stalled, with
        # the sender making it; never one waiting aside, which may well be read (module
        # docstring): its peer's sends that end holding a place, cancelled or not, or give
        # their places up, take it back from aside.
        stalled = []
        for me, stream in self._sending.items():
            stalls_at = _stalls_at(stream, me)
            if stalls_at is not None and now > stalls_at:
                stalled.append((me, stream))
        return stalled

    def _next_due(self) -> float | None:
        # Under the lock: when the watch next has something to look at, None for nothing.
        due = [self._ready[0][0] + PROMPT_SEND_SECONDS] if self._ready else []
        for me, stream in self._sending.items():
            at = self._due(me, stream)
            if at is not None:
                due.append(at)
        return min(due, default=None)


def _count(counts: dict[str, int], peer: str, change: int) -> None:
    """Change ``peer``'s count by ``change``, keeping no count of 0."""
    left = counts.get(peer, 0) + change
    if left:
        counts[peer] = left
    else:
        counts.pop(peer, None)
