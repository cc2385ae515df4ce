"""grpc.health.v1 that keeps nothing for a service name its server does not serve.

Shared by the bank's servers (``gateway.health_monitor``'s ``WatchEndingHealth``) and the
merchant's (``clients.merchant.servicer``), as ``setcore.admission`` is: server code both
may import, so it lives here. Nothing here serves.

grpc_health's ``HealthServicer`` keys its Watch streams by the name each one asked for and
never drops a key when its stream ends (its close callback empties the key's set and leaves
the key), so every distinct name a peer ever watched stayed in the server for good: a
Watch needs no client certificate on the CA's port nor on the merchant's, and a name may
be as long as a message (gRPC's 1 MiB limit), so opening and cancelling streams for
distinct, long names grew a server's memory without bound (300 such names: over 300 MB).

Here a server names the services it serves when it is built (its bound services, and ""
for the whole server, which grpc.health.v1 always has): only those are ever kept, each by
name once, with a set of its open Watch streams that a stream leaves when its call ends.
A Watch for any other name gets what the health protocol says it gets, SERVICE_UNKNOWN,
and stays open, as the protocol says too ("the server will send a message setting the
serving status to SERVICE_UNKNOWN but will not terminate the call"); but it is kept under
no name, because a name the server does not serve can never become known: a server's
services are fixed when it is built. Ending it instead would have the protocol's client
retry it (any status but UNIMPLEMENTED, OK too, means retry, with backoff), over and over
for nothing. While open it costs what an open Watch for a served name
costs, its call and nothing of its request, which is not kept past the call to Watch (a
warm server held 100 open streams naming 1 MiB each in no more memory than 100 naming a
few bytes), so the name's size needs no bound of its own. A Check for such a name is
NOT_FOUND (grpc_health's own answer), and keeps nothing either.

The servicer is our own, on grpc.health.v1's generated base only (``health_pb2_grpc``):
grpc_health's ``HealthServicer`` keeps its state in private attributes that a subclass
had to reach into (its lock among them, which grpc's own master has since renamed), and
any release that renamed one would have stopped every server from starting, as nothing
pins grpcio-health-checking below the next release. What grpc_health did that is kept:
"" is SERVING from the start, a Check for a name with no status is NOT_FOUND, a Watch is
non-blocking (grpcio's send callback), told the current status (SERVICE_UNKNOWN while
there is none) and then every ``set`` of its name, a repeat included, and
``enter_graceful_shutdown`` sets NOT_SERVING for good. List is not implemented, as it was
not there.

Open Watch streams are bounded: at most ``MAX_WATCHES`` at once per server, whatever
their names; one past that is refused RESOURCE_EXHAUSTED before anything is sent or kept
(the protocol's client retries it, with backoff). A Watch holds no thread, but it is a
call in flight with its HTTP/2 stream and grpcio's state, some kilobytes each, for as
long as its peer keeps it; a Watch needs no client certificate on the CA's port nor on
the merchant's, so without a bound a peer held as many as it opened, and a bank worker
sends every status it sets (each name, every second) on every one of them.

``end_watches`` ends every open Watch stream (status OK) and any that starts after it,
told its status first: a Watch is a call in flight, and gRPC's ``stop(grace)`` waits for
every call, so one open stream held a stopping server for its whole grace period with
nothing else to finish. A server calls it once it is stopping, after
``enter_graceful_shutdown`` (or its last ``set``) has told each stream NOT_SERVING. An
ended stream stays open, counted against ``MAX_WATCHES``, until its call is over: its end
goes out after what was queued on it, and a peer that takes nothing holds that end as it
holds a status, until the senders' stall watch cancels it (``setcore.watch_sends``: it
watches every send under way, an ended stream's too). Once, emptying the open streams at
once stopped the stall watch with such a send under way, and nothing cancelled it: a
merchant's ``stop(20)`` with one such Watch took the whole 20 s.

What is not kept: grpc_health sent each status while holding the lock that a stream's
close callback takes too. grpcio runs close callbacks in its poll thread, and a send
waits for that thread to complete the write: a Watch that ended while a ``set`` was
sending (the monitor sets every name every second) left the poll thread waiting for the
lock and the send waiting for the poll thread, and the server answered nothing more.
Here the state lock is held for bookkeeping only, never across a send.

How a stream's statuses are sent is ``setcore.watch_sends``'s: no caller sends
(``set``, ``enter_graceful_shutdown``, ``end_watches`` and Watch itself only record what
each stream is to be told), each stream orders its own sends, and a send its peer has not
taken within its stall limit (``SEND_STALL_SECONDS``) has its call cancelled, an ended
stream's too. A stream is cancelled for its own stall only: a peer that takes nothing
delays a stream of another connection by a fraction of a second at most, and one of its
own connection (HTTP/2's flow control is per stream) by as long as the streams queued
before it there hold their places (2 s, and 0.25 s for every 4 more), after which that
stream is told its statuses all the same. Its own limit is 2 s, whatever its neighbours
did: one taken back from aside in place of a send its connection had cancelled as
stalled holds its connection's place for 0.25 s only, and its send then goes on without
it, so a reading stream there is told its status however slowly a busy server sends it
(within its 2 s).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from setcore.watch_sends import Run, Senders
from setcore.watch_stream import Send, WatchStream

#: The name of the whole server's health, which grpc.health.v1 always has.
OVERALL_HEALTH = ""
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
#: Watch streams a server holds open at once, whatever their names (module docstring). A
#: load balancer keeps one per backend from each of its nodes: a few hundred leave room
#: for a large fleet, and cost a server some MB and a bank worker's monitor well under a
#: millisecond of sends a second for each name.
MAX_WATCHES = 256
#: The details of a Watch refused past ``MAX_WATCHES``.
WATCHES_REFUSAL = "too many health Watch streams open on this server"

_W = TypeVar("_W", bound=Callable[..., None])


def _non_blocking(watch: _W) -> _W:
    """Mark ``watch`` as grpcio's non-blocking streaming behaviour: grpcio gives a behaviour
    that carries ``experimental_non_blocking`` a send callback and frees its thread when it
    returns, instead of iterating what it returns (grpc_health marks its Watch so)."""
    watch.experimental_non_blocking = True  # type: ignore[attr-defined]
    return watch


class ServedHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 (non-blocking Watch) for a fixed set of service names; see the
    module docstring for why a name outside it is never kept, and why this is not
    grpc_health's servicer."""

    def __init__(self, services: Iterable[str] = (), run: Run | None = None) -> None:
        """Serve ``services`` (and ""); ``run`` runs the streams' sends, on the servicer's
        own threads (``setcore.watch_sends.Senders``) unless given (a test's may run them
        at once)."""
        # Bookkeeping only (statuses, watchers, names): never held across a send, as a
        # close callback takes it in grpcio's poll thread.
        self._lock = threading.Lock()
        self._served = {OVERALL_HEALTH, *services}
        self._statuses: dict[str, int] = {OVERALL_HEALTH: _SERVING}
        # The order of each name's status as last set, among every set: a stream's sends
        # keep it (``WatchStream.offer``).
        self._seq = 0
        self._set_as: dict[str, int] = {}
        self._watchers: dict[str, set[Send]] = {}
        self._shutting_down = False
        # Every open Watch stream, of any name (``MAX_WATCHES``), until its call is over:
        # ended ones too, whose end may wait for their peer as a status does.
        self._open_watches: dict[Send, WatchStream] = {}
        self._watches_ended = False
        self._run: Run = run if run is not None else Senders().run

    def __init_subclass__(cls, **kwargs: object) -> None:
        # A subclass's own Watch is the behaviour grpcio is given: marked too.
        super().__init_subclass__(**kwargs)
        _non_blocking(cls.Watch)

    def serve(self, services: Iterable[str]) -> None:
        """Name services this server serves too (before it starts: a Watch for a name
        not yet named is told SERVICE_UNKNOWN, and never told more)."""
        with self._lock:
            self._served.update(services)

    @property
    def served(self) -> frozenset[str]:
        """The service names this server serves, "" among them."""
        with self._lock:
            return frozenset(self._served)

    def statuses(self) -> dict[str, int]:
        """Each name's status as last set (a copy): what a Check answers."""
        with self._lock:
            return dict(self._statuses)

    def watchers(self) -> dict[str, int]:
        """The names open Watch streams are kept under, each with how many: only names
        served, and none without a stream."""
        with self._lock:
            return {name: len(sends) for name, sends in self._watchers.items()}

    @property
    def open_watches(self) -> int:
        """Watch streams open now, of any name."""
        with self._lock:
            return len(self._open_watches)

    def end_watches(self) -> None:
        """End every open Watch stream (status OK), and any that starts from now on,
        after its status (module docstring). Sends nothing itself: the senders end each
        stream after what was offered on it, and it stays open (counted against
        ``MAX_WATCHES``) until its call is over, its sends under the senders' stall watch."""
        with self._lock:
            self._watches_ended = True
            streams = list(self._open_watches.values())
        self._hand_over([stream for stream in streams if stream.end()])

    def set(self, service: str, status: int) -> None:
        """Set ``service``'s status and have it sent on each of its Watch streams (a
        repeat of the same status too, as grpc_health did), by the senders: returns
        without waiting for any peer. For a name this server serves only: any other is
        the server's own mistake, refused (ValueError) before anything is kept. Ignored
        once ``enter_graceful_shutdown`` has run."""
        with self._lock:
            if service not in self._served:
                raise ValueError(f"health status set for a service not served here: {service!r}")
            if self._shutting_down:
                return
            self._statuses[service] = status
            seq = self._next_seq(service)
            streams = self._streams_of(service)
        self._hand_over([stream for stream in streams if stream.offer(status, seq)])

    def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every name with a status, sent on its streams (by the senders),
        and every later
        ``set`` ignored (grpc_health's, for a server entering its grace period)."""
        with self._lock:
            if self._shutting_down:
                return
            self._shutting_down = True
            offers = []
            for name in self._statuses:
                self._statuses[name] = _NOT_SERVING
                seq = self._next_seq(name)
                offers += [(stream, seq) for stream in self._streams_of(name)]
        self._hand_over([stream for stream, seq in offers if stream.offer(_NOT_SERVING, seq)])

    def _hand_over(self, streams: list[WatchStream]) -> None:
        # Outside the state lock: streams with something new to send, to the senders.
        if streams:
            self._run(streams)

    def _next_seq(self, name: str) -> int:
        # Under the state lock: ``name``'s status was just set.
        self._seq += 1
        self._set_as[name] = self._seq
        return self._seq

    def _streams_of(self, name: str) -> list[WatchStream]:
        # Under the state lock: the open streams watching ``name`` (an ended one ignores
        # what it is offered).
        sends = self._watchers.get(name, ())
        return [self._open_watches[send] for send in sends if send in self._open_watches]

    def Check(  # noqa: N802 - gRPC's method name
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        """The name's status; NOT_FOUND (grpc_health's answer) for a name with none, a
        name not served among them, and nothing kept for it."""
        with self._lock:
            status = self._statuses.get(request.service)
        if status is None:
            context.set_code(grpc.StatusCode.NOT_FOUND)
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)

    @_non_blocking
    def Watch(  # noqa: N802 - gRPC's method name
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.ServicerContext,
        send_response_callback: Send | None = None,
    ) -> None:
        """Non-blocking: the current status now, and each one set until the call ends;
        SERVICE_UNKNOWN, and nothing kept under its name, for a name not served here.
        RESOURCE_EXHAUSTED, nothing sent nor kept, past ``MAX_WATCHES`` open streams;
        ended at once, after its status, once ``end_watches`` has run. Sends nothing
        itself: the senders do, and the server's thread is free at once."""
        if send_response_callback is None:
            raise TypeError("Watch is non-blocking here (as built above): it needs a callback")
        send = send_response_callback
        service = request.service
        with self._lock:
            served = service in self._served
            ended = self._watches_ended
            full = len(self._open_watches) >= MAX_WATCHES
            status = self._statuses.get(service, _UNKNOWN.status) if served else _UNKNOWN.status
            seq = self._set_as.get(service, 0)
            stream = WatchStream(send, context, status, seq, ending=ended)
            if not full:
                # Joined with the status it is told first, under one lock: no ``set`` can
                # slip a change between them that the stream would not be told. Once
                # ended, held too: its status and end may stall as any send does.
                self._open_watches[send] = stream
                if served and not ended:
                    self._watchers.setdefault(service, set()).add(send)
        if full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, WATCHES_REFUSAL)
        # Before the stream is handed over: a hand-over that raises fails the call, and
        # the stream leaves with it (it once stayed among the open ones for good, counted
        # against ``MAX_WATCHES``). grpc_health added its close callback without looking
        # at the answer: a call already over (its client gone while it waited for a
        # thread) never runs it, and its stream stayed among the watchers for good.
        if not context.add_callback(lambda: self._unwatch(service, send)):
            self._unwatch(service, send)
        self._run([stream])  # ended after its status if ``end_watches`` has run

    def _unwatch(self, service: str, send: Send) -> None:
        # A close callback: grpcio's poll thread runs it. The state lock only, which no
        # send is ever made under (module docstring).
        with self._lock:
            self._open_watches.pop(send, None)
            sends = self._watchers.get(service)
            if sends is not None:
                sends.discard(send)
                if not sends:
                    del self._watchers[service]
