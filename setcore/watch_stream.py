"""One health Watch stream that orders its own sends (``setcore.watch_sends``'s senders
make them, for ``setcore.served_health``'s streams).

A stream keeps the status it is to be told next (the latest only) and whether it is to be
ended, and one thread at a time sends them, in that order; a status older than one
already offered is dropped, so a stream is told its first status and then the changes,
in the order they were set, and only a stream that lags is told fewer of them. Sends of
one name were once ordered by a lock of that name's own, held across every send: one
Watch whose peer took nothing held every later ``set`` of its name for good (a bank
worker stayed SERVING while its probes failed, and its drain never ended).

What a stream records of the send under way (when it began, whether the stream was taken
back from aside in place of a stalled send, which sender makes it) is for the senders'
stall watch, whose limits are ``setcore.watch_sends``'s: a stream knows none of them. The
watch reads a send, gives its place up and cancels its call for the sender that makes it
only: a sender that has just let the stream go idle still names it until it next takes
the senders' lock, and by then the stream may be another sender's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2

#: A Watch stream's send callback (grpcio's): a response, or None to end the stream.
Send = Callable[[object], None]
#: What ``WatchStream._pick`` returns with nothing left to send: None is a send (the end).
_IDLE = object()


class WatchStream:
    """One open Watch stream, which orders its own sends (module docstring): its send
    callback and call, the newest status offered to it (by its order, ``seq``), the status
    to send next, whether it is to be ended and has been, whether a sender has it or it is
    queued for one (``busy``), when the send under way began (None: none is), whether
    it was taken back from aside in place of a stalled send (``aside``, until it is idle),
    whether the send under way gave its place up (``placeless``, until it is over), and
    which sender has the stream, or last had it (``sender``, ``handed_out``). Calling it
    sends what is due on it (a sender's, or a test's ``run``)."""

    __slots__ = (
        "_peer", "aside", "busy", "cancelled", "context", "ended", "ending", "lock", "pending",
        "placeless", "send", "sender", "seq", "since",
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
        self.placeless = False
        self.sender: object | None = None
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

    def __call__(self) -> bool:
        """A sender's: the pending status, then the end if it is due, until nothing is
        left (False: the stream is idle); a status recorded meanwhile is sent by this loop
        too, after the one under way, unless that send's place was given up
        (``give_place_up``): then True, the stream still busy, for the senders to queue
        again. A send that raises leaves the call over: nothing more is sent on it.

        From a send's end to the next send's ``since`` (or the stream idle) is one hold of
        the lock: the stall watch reads ``since`` as a send under way. Once, the lock was
        let go between the check for a place given up and the pick of the next send, and
        a look of the watch in between, a send over but its start still recorded,
        cancelled a call whose peer had taken its status in time, or gave up the place of
        a send already over, the next then sent placeless from its start."""
        with self.lock:
            response = self._pick()
        while response is not _IDLE:
            failed = False
            try:
                self.send(response)
            except Exception:  # noqa: BLE001 - grpcio's; the sender must go on to others
                failed = True
            with self.lock:
                if failed:
                    self.pending, self.ending, self.ended = None, True, True
                if self.placeless:  # its sender holds no place: the rest waits for one
                    self.placeless, self.since = False, None
                    return True  # still busy: the senders queue it again
                response = self._pick()
        return False

    def _pick(self) -> object:
        # Under the lock: what to send next, its ``since`` set, or _IDLE, the stream
        # idle (``__call__``).
        if self.pending is not None:
            response: object = health_pb2.HealthCheckResponse(status=self.pending)
            self.pending = None
        elif self.ending and not self.ended:
            response, self.ended = None, True
        else:
            self.busy, self.since, self.aside = False, None, False
            self.placeless = False
            return _IDLE
        self.since = time.monotonic()
        return response

    def give_place_up(self, began_by: float, sender: object) -> bool:
        """The senders': the send under way, if ``sender`` makes it and it began by
        ``began_by``, goes on without a place; once it is over ``sender`` hands the stream
        back, busy, to be queued again (``Senders._sent``). False, and nothing changed, for
        a send begun later, another sender's, none under way, or the call cancelled: the
        senders read the send under way before they give its place up, and it may end in
        between. Once, a send that completed so left ``placeless`` set on the idle
        stream: the next send on it, holding a place, handed it back all the same, and it
        stayed busy in no queue, told nothing more, for good (and a next send begun in
        between gave its place up at once). Once, too, a sender whose stream had gone idle
        and been taken by another sender since had its place given up, on that other's
        send: the stream came back handed back to a sender that had given up no place,
        which did not queue it again (busy in no queue, so too)."""
        with self.lock:
            began = self._began(sender)
            if began is None or began > began_by:
                return False
            self.placeless = True
            return True

    def taken_from_aside(self) -> None:
        """The senders': the stream, set aside while its connection had its every place
        taken, is queued again in place of a send of its connection that stalled; its
        sends until it is idle hold that place for a short while only
        (``setcore.watch_sends.STALLED_PLACE_SECONDS``)."""
        with self.lock:
            self.aside = True

    def _began(self, sender: object) -> float | None:
        # Under the lock: when ``sender``'s send under way began; None with none of its
        # under way, or the call cancelled. ``since`` is set from ``handed_out`` (the
        # last one, by ``sender``) until the stream is idle or handed back, so a sender
        # whose stream has gone idle, and been handed out again since, has none.
        if self.cancelled or self.sender is not sender:
            return None
        return self.since

    def handed_out(self, now: float, sender: object) -> None:
        """The senders': ``sender`` has the stream and begins its sends ``now``. Marked
        here, under the senders' lock, not only as the send begins, so that the stall
        watch, at any look after the hand-over, knows when to look at it: once, a look in
        between saw nothing under way and waited on as long as it liked, and a stream's
        limit held only once it looked again."""
        with self.lock:
            self.sender = sender
            if not self.cancelled:
                self.since = now

    def under_way(self, sender: object) -> tuple[float, bool] | None:
        """When the send under way began, if ``sender`` makes it, and whether the stream
        was taken back from aside for a stall (``taken_from_aside``); None with none of
        ``sender``'s under way, or the call cancelled already."""
        with self.lock:
            began = self._began(sender)
            return None if began is None else (began, self.aside)

    def cancelled_with(self, sender: object) -> bool:
        """The senders', once ``sender`` is done with the stream: whether its call is
        cancelled and ``sender`` was the last handed the stream (not cancelled since, by
        the sender that has it now). That is cancelled while ``sender`` had it, or
        before: a stream handed back by a sender whose placeless send was cancelled is
        handed out again cancelled already, and the sender it is handed to (that one
        again, or another), which sends nothing on it, is told True too."""
        with self.lock:
            return self.cancelled and self.sender is sender

    def cancel(self, began_by: float, sender: object) -> None:
        """Cancel the stream's call, its peer having taken nothing for too long, and send
        nothing more on it: a send under way ends (grpcio's), freeing its thread; once only.
        Only if ``sender`` makes the send under way and it began by ``began_by``: the
        senders read it before they cancel, and a send that completed in between, at its
        limit, once had the call cancelled all the same, with the next send on it begun
        just now."""
        with self.lock:
            began = self._began(sender)
            if began is None or began > began_by:
                return
            self.cancelled = True
            self.pending, self.ending, self.ended = None, True, True
        # grpc.RpcContext's: its stub is untyped.
        self.context.cancel()  # type: ignore[no-untyped-call]
