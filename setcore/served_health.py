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

What is not kept: grpc_health sent each status while holding the lock that a stream's
close callback takes too. grpcio runs close callbacks in its poll thread, and a send
waits for that thread to complete the write: a Watch that ended while a ``set`` was
sending (the monitor sets every name every second) left the poll thread waiting for the
lock and the send waiting for the poll thread, and the server answered nothing more.
Here the state lock is held for bookkeeping only, never across a send; sends of one name
are ordered by a lock of the name's own (``_sending``), which no close callback takes, so
a Watch's first status still comes before any later one and each stream is told the
changes in the order they were set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

#: The name of the whole server's health, which grpc.health.v1 always has.
OVERALL_HEALTH = ""
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)

#: A Watch stream's send callback (grpcio's): a response, or None to end the stream.
Send = Callable[[object], None]
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

    def __init__(self, services: Iterable[str] = ()) -> None:
        # Bookkeeping only (statuses, watchers, names): never held across a send, as a
        # close callback takes it in grpcio's poll thread.
        self._lock = threading.Lock()
        # A lock per name served, held while its status is sent (module docstring): its
        # keys are the names served.
        self._sending = {name: threading.Lock() for name in (OVERALL_HEALTH, *services)}
        self._statuses: dict[str, int] = {OVERALL_HEALTH: _SERVING}
        self._watchers: dict[str, set[Send]] = {}
        self._shutting_down = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        # A subclass's own Watch is the behaviour grpcio is given: marked too.
        super().__init_subclass__(**kwargs)
        _non_blocking(cls.Watch)

    def serve(self, services: Iterable[str]) -> None:
        """Name services this server serves too (before it starts: a Watch for a name
        not yet named is told SERVICE_UNKNOWN, and never told more)."""
        with self._lock:
            self._sending = {**{name: threading.Lock() for name in services}, **self._sending}

    @property
    def served(self) -> frozenset[str]:
        """The service names this server serves, "" among them."""
        return frozenset(self._sending)

    def statuses(self) -> dict[str, int]:
        """Each name's status as last set (a copy): what a Check answers."""
        with self._lock:
            return dict(self._statuses)

    def watchers(self) -> dict[str, int]:
        """The names open Watch streams are kept under, each with how many: only names
        served, and none without a stream."""
        with self._lock:
            return {name: len(sends) for name, sends in self._watchers.items()}

    def set(self, service: str, status: int) -> None:
        """Set ``service``'s status and send it on each of its Watch streams (a repeat of
        the same status too, as grpc_health did), for a name this server serves only: any
        other is the server's own mistake, refused (ValueError) before anything is kept.
        Ignored once ``enter_graceful_shutdown`` has run."""
        sending = self._sending.get(service)
        if sending is None:
            raise ValueError(f"health status set for a service not served here: {service!r}")
        with sending:
            with self._lock:
                if self._shutting_down:
                    return
                self._statuses[service] = status
                sends = list(self._watchers.get(service, ()))
            _send_all(sends, status)

    def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every name with a status, sent on its streams, and every later
        ``set`` ignored (grpc_health's, for a server entering its grace period)."""
        with self._lock:
            if self._shutting_down:
                return
            self._shutting_down = True
            names = list(self._statuses)
        for name in names:
            with self._sending[name]:  # after any ``set`` of it already sending
                with self._lock:
                    self._statuses[name] = _NOT_SERVING
                    sends = list(self._watchers.get(name, ()))
                _send_all(sends, _NOT_SERVING)

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
        SERVICE_UNKNOWN, and nothing kept, for a name not served here."""
        if send_response_callback is None:
            raise TypeError("Watch is non-blocking here (as built above): it needs a callback")
        send = send_response_callback
        service = request.service
        sending = self._sending.get(service)
        if sending is None:
            send(_UNKNOWN)
            return
        with sending:
            # Joined and told its status under the name's sending lock: no ``set`` can
            # slip a change between this first status and the stream's joining.
            with self._lock:
                status = self._statuses.get(service, _UNKNOWN.status)
                self._watchers.setdefault(service, set()).add(send)
            send(health_pb2.HealthCheckResponse(status=status))
        # grpc_health added its close callback without looking at the answer: a call
        # already over (its client gone while it waited for a thread) never runs it, and
        # its stream stayed among the watchers for good.
        if not context.add_callback(lambda: self._unwatch(service, send)):
            self._unwatch(service, send)

    def _unwatch(self, service: str, send: Send) -> None:
        # A close callback: grpcio's poll thread runs it. The state lock only, which no
        # send is ever made under (module docstring).
        with self._lock:
            sends = self._watchers.get(service)
            if sends is not None:
                sends.discard(send)
                if not sends:
                    del self._watchers[service]


def _send_all(sends: Iterable[Send], status: int) -> None:
    """``status`` on each of ``sends``: under its name's sending lock, never the state
    lock (module docstring)."""
    response = health_pb2.HealthCheckResponse(status=status)
    for send in sends:
        send(response)
