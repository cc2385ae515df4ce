"""How a health Watch stream's statuses reach its peer (``setcore.served_health``'s
streams): each stream orders its own sends, and the servicer's own threads make them, so
that no caller waits for a peer, and no peer that takes nothing delays another's status.

A send completes only once the peer's HTTP/2 flow control lets the status out, and a peer
may keep its window shut for as long as it likes (one that opened a Watch with a window
of 0, or never read its stream): the send then waits for good, and holds the thread that
made it. grpcio's send callback has no other form. So:

Each stream orders its own sends (``WatchStream``): it keeps the status it is to be told
next (the latest only) and whether it is to be ended, and one thread at a time sends
them, in that order; a status older than one already offered is dropped, so a stream is
told its first status and then the changes, in the order they were set, and only a
stream that lags is told fewer of them. Sends of one name were once ordered by a lock of
that name's own, held across every send: one Watch whose peer took nothing held every
later ``set`` of its name for good (a bank worker stayed SERVING while its probes failed,
and its drain never ended).

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
address behind a NAT or a proxy) has at most ``PEER_SENDERS`` sends under way at once;
its other streams wait aside, for no sender, and each of its sends that ends (completed,
or cancelled as stalled) takes back the oldest of them (``Senders._sent``). So stalled
sends hold at most ``PEER_SENDERS`` threads per connection, and never more than the
server holds Watch streams open.

A stream is cancelled for its own stall only, never with a neighbour's (which may shorten
its stall limit, below, no more). HTTP/2's flow control is per stream, so streams of one
connection whose peer reads (a load balancer multiplexing its Watches, gRPC's client-side
health checking on an application's connection) take their statuses however many of their
neighbours read nothing. Streams aside were once cancelled with their connection's
stalled ones: one connection with 10 reading Watches and 4 that read nothing had all 10
cancelled, told 1 of 13 statuses, and none told NOT_SERVING at a stop. A stream taken
back from aside in place of a send its connection had cancelled as stalled, while no other
send of that connection completed for ``SEND_STALL_SECONDS``, has ``ASIDE_STALL_SECONDS``
for its sends instead: its neighbour's peer took nothing for seconds, a peer that reads
takes a status in well under a millisecond, and a connection whose every stream stalls
is still drained,
``PEER_SENDERS`` streams at a time, 16 a second (a stop waits for it). So a reading
stream taken back so is cancelled if its peer takes no status within that 0.25 s (a
loaded machine's pause may be longer). One taken back in place of a send that completed,
or ended otherwise, keeps ``SEND_STALL_SECONDS``: once every stream taken back had the
short limit, so that on a busy server, whose one sender lagged past
``PROMPT_SEND_SECONDS``, a connection's streams past its first ``PEER_SENDERS`` waited
aside behind sends that were merely slow and were cancelled by it, though none stalled (a
load balancer's 10 Watches on one connection: 6 reset, beside 8 busy request threads);
and once a slow reader taken back for a stalled neighbour and cancelled passed the short
limit to the next, and so on down the connection (one stalled stream among 31 slow
readers: 7 of them reset), where the connection's other sends completing now say its
peer reads. A
stream that waits aside is told late, not never: after its neighbours' sends (2 s for
those that stall, and 0.25 s for every ``PEER_SENDERS`` stalling streams aside before it;
as much as 2 s each where stalling streams are taken back after reading ones).

A send that has not completed within its stall limit has its call cancelled, which ends
the send and frees its thread; an ended stream's too, so a stop waits on no peer for
longer. The senders' watch (``Senders._keep``) does both, and ends, as each sender does,
once there has been nothing to watch for ``SENDER_IDLE_SECONDS``. A sender that takes a
stream marks its sends begun and wakes the watch if it would look later than their limit
(``Senders._next``): once, nothing woke it, and a limit of 0.25 s held only at its next
look, up to 5 s later (the watch's idle end).

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

import grpc
from grpc_health.v1 import health_pb2

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
#: docstring) may wait for its peer before its call is cancelled: a peer that reads takes
#: a status in well under a millisecond (not within every pause of a loaded machine, so
#: it is for streams beside a stalled one only); and one connection's streams that all
#: stall are cancelled ``PEER_SENDERS`` at a time, 16 a second (255: 16 s).
ASIDE_STALL_SECONDS = 0.25
#: Sends under way at once on one peer (one connection); its other streams wait aside. A
#: peer that reads frees each in well under a millisecond; one that stalls holds no more
#: threads than this, however many streams it opens.
PEER_SENDERS = 4
#: How long a sender, or the senders' watch, with nothing to do waits for more before it
#: ends: past the bank's probe interval (1 s), so that its every-second sets reuse them.
SENDER_IDLE_SECONDS = 5.0

log = logging.getLogger("setpay.health")

#: A Watch stream's send callback (grpcio's): a response, or None to end the stream.
Send = Callable[[object], None]
#: What runs the sends of streams handed over together (``Senders.run`` unless a test
#: gives its own, which may call each stream at once).
Run = Callable[[list["WatchStream"]], object]


class WatchStream:
    """One open Watch stream, which orders its own sends (module docstring): its send
    callback and call, the newest status offered to it (by its order, ``seq``), the status
    to send next, whether it is to be ended and has been, whether a sender has it or it is
    queued for one (``busy``), when the send under way began (None: none is), and whether
    it was taken back from aside in place of a stalled send (``ASIDE_STALL_SECONDS``).
    Calling it sends what is due on it (a sender's, or a test's ``run``)."""

    __slots__ = (
        "_peer", "aside", "busy", "cancelled", "context", "ended", "ending", "lock", "pending",
        "send", "seq", "since",
    )  # fmt: skip

    def __init__(
        self, send: Send, context: grpc.ServicerContext, first: int, seq: int, ending: bool
    ) -> None:
        """A stream to be told ``first`` (the ``seq``-th set), and then ended if
        ``ending``, once handed to the senders: recorded before any other thread can see
        the stream, so that neither a ``set`` nor an ``end_watches`` can come before them."""
        self.send = send
        self.context = context
        self.lock = threading.Lock()  # never held across a send
        self.seq = seq
        self.pending: int | None = first
        self.ending = ending
        self.ended = False
        self.cancelled = False
        self.busy = True  # for its first status
        self.since: float | None = None
        self.aside = False
        self._peer: str | None = None

    @property
    def peer(self) -> str:
        """The connection the stream came on (gRPC's ``peer()``), asked once: the senders
        ask it before they take their lock, the first time on the Watch's own thread."""
        if self._peer is None:
            self._peer = str(self.context.peer())
        return self._peer

    def offer(self, status: int, seq: int) -> bool:
        """Record ``status`` (the ``seq``-th set) as the next to send, for a sender to send
        (never the caller); whether the caller is to hand the stream to the senders (none
        has it nor has it queued). A status no newer than one offered already is dropped,
        and every status once the stream is to be ended."""
        with self.lock:
            if self.ending or seq <= self.seq:
                return False
            self.seq, self.pending = seq, status
            return self._claim()

    def end(self) -> bool:
        """Record that the stream is to be ended (status OK) after what is to be sent on
        it, for a sender to end it (never the caller), once only; whether the caller is
        to hand the stream to the senders (``offer``)."""
        with self.lock:
            if self.ending:
                return False
            self.ending = True
            return self._claim()

    def _claim(self) -> bool:
        # Under the stream's lock: whether the caller is to hand the stream over.
        if self.busy:
            return False
        self.busy = True
        return True

    def __call__(self) -> None:
        """A sender's: the pending status, then the end if it is due, until nothing is
        left; a status recorded meanwhile is sent by this loop too, after the one under
        way. A send that raises leaves the call over: nothing more is sent on it."""
        while True:
            with self.lock:
                if self.pending is not None:
                    response: object = health_pb2.HealthCheckResponse(status=self.pending)
                    self.pending = None
                elif self.ending and not self.ended:
                    response, self.ended = None, True
                else:
                    self.busy, self.since, self.aside = False, None, False
                    return
                self.since = time.monotonic()
            try:
                self.send(response)
            except Exception:  # noqa: BLE001 - grpcio's; the sender must go on to others
                with self.lock:
                    self.pending, self.ending, self.ended = None, True, True

    def taken_from_aside(self) -> None:
        """The senders': the stream, set aside while its connection had ``PEER_SENDERS``
        sends under way, is queued again in place of a send of its connection cancelled
        as stalled; its sends until it is idle stall sooner (``ASIDE_STALL_SECONDS``)."""
        with self.lock:
            self.aside = True

    def handed_out(self, now: float) -> float | None:
        """The senders': a sender has the stream and begins its sends ``now``; when the
        first stalls (``stalls_at``). Marked here, under the senders' lock, not only as
        the send begins, so that the stall watch, at any look after the hand-over, knows
        when to look at it: once, a look in between saw nothing under way and waited on
        as long as it liked, and a stream's stall limit held only once it looked again."""
        with self.lock:
            if not self.cancelled:
                self.since = now
        return self.stalls_at()

    def stalls_at(self) -> float | None:
        """When the send under way stalls (its stall limit after it began: the module
        docstring's); None with none under way, or the call cancelled already."""
        with self.lock:
            if self.cancelled or self.since is None:
                return None
            return self.since + (ASIDE_STALL_SECONDS if self.aside else SEND_STALL_SECONDS)

    def stalled(self, now: float) -> bool:
        """Whether a send on this stream has waited past its stall limit and its call is
        not cancelled yet."""
        stalls_at = self.stalls_at()
        return stalls_at is not None and now > stalls_at

    def cancel(self) -> None:
        """Cancel the stream's call, its peer having taken nothing for too long, and send
        nothing more on it: a send under way ends (grpcio's), freeing its thread; once only."""
        with self.lock:
            if self.cancelled:
                return
            self.cancelled = True
            self.pending, self.ending, self.ended = None, True, True
        # grpc.RpcContext's: its stub is untyped.
        self.context.cancel()  # type: ignore[no-untyped-call]


#: A stream queued for a sender, with when it was queued.
_Queued = tuple[float, WatchStream]


class Senders:
    """The servicer's own threads that send on its streams, and their watch (module
    docstring). Streams are queued once each (``WatchStream.busy``); a sender takes them
    in order, one at a time, and makes every send due on one before the next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # idle senders wait on it
        self._watching = threading.Condition(self._lock)  # the watch waits on it
        self._ready: deque[_Queued] = deque()
        # Streams of a peer with ``PEER_SENDERS`` sends under way, oldest first.
        self._aside: dict[str, deque[_Queued]] = {}
        self._sending: dict[object, WatchStream] = {}  # by sender
        self._per_peer: dict[str, int] = {}  # sends under way
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
        while True:
            with self._lock:
                if stream is not None:
                    self._sent(me, stream)
                stream = self._next(me)
                if stream is None:
                    return
            stream()

    def _sent(self, me: object, stream: WatchStream) -> None:
        # Under the lock: ``me``'s sends on ``stream`` are over (completed, or its call
        # cancelled); its peer's oldest stream aside, if any, is next, ahead of those
        # queued after it, with the shorter stall limit if ``stream`` was cancelled as
        # stalled, the module's otherwise (module docstring).
        del self._sending[me]
        peer = stream.peer
        now = time.monotonic()
        if not stream.cancelled:
            self._completed[peer] = now
        left = self._per_peer[peer] - 1
        if left:
            self._per_peer[peer] = left
        else:
            del self._per_peer[peer]
        waiting = self._aside.get(peer)
        if waiting:
            queued = waiting.popleft()
            # Its neighbour stalled, and no send of the connection completed for as long
            # as a stall takes: this one may well stall too. A connection whose other
            # streams read passes no short limit on (a slow reader's cancel chains none).
            if stream.cancelled and now - self._completed.get(peer, 0.0) >= SEND_STALL_SECONDS:
                queued[1].taken_from_aside()
            self._ready.appendleft(queued)
            if not waiting:
                del self._aside[peer]
        elif peer not in self._per_peer:
            self._completed.pop(peer, None)

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
                stalls_at = stream.handed_out(time.monotonic())
                if stalls_at is not None and stalls_at < self._watch_until:
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
        """The senders' watch: gives waiting streams senders of their own once they have
        waited ``PROMPT_SEND_SECONDS`` (``_widen``), again after a look at which one did
        not start, and cancels what has stalled (``_stalled``), each when due; ends after
        ``SENDER_IDLE_SECONDS`` with nothing."""
        idle_since: float | None = None
        while True:
            with self._lock:
                now = time.monotonic()
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
            for stream in stalled:
                stream.cancel()
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

    def _stalled(self, now: float) -> list[WatchStream]:
        # Under the lock: the streams to cancel, each whose own send has stalled; never
        # one waiting aside, which may well be read (module docstring): its peer's sends
        # that end, cancelled or not, take it back from aside.
        return [stream for stream in self._sending.values() if stream.stalled(now)]

    def _next_due(self) -> float | None:
        # Under the lock: when the watch next has something to look at, None for nothing.
        due = [self._ready[0][0] + PROMPT_SEND_SECONDS] if self._ready else []
        for stream in self._sending.values():
            stalls_at = stream.stalls_at()
            if stalls_at is not None:
                due.append(stalls_at)
        return min(due, default=None)
