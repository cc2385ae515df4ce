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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2

_UNKNOWN = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)


class ServedHealth(health.HealthServicer):
    """grpc_health's servicer (non-blocking Watch) for a fixed set of service names; see
    the module docstring for why a name outside it is never kept."""

    def __init__(self, services: Iterable[str] = ()) -> None:
        super().__init__(experimental_non_blocking=True)
        self._served: frozenset[str] = frozenset((health.OVERALL_HEALTH, *services))

    def serve(self, services: Iterable[str]) -> None:
        """Name services this server serves too (before it starts: a Watch for a name
        not yet named is told SERVICE_UNKNOWN, and never told more)."""
        with self._lock:
            self._served = self._served | frozenset(services)

    @property
    def served(self) -> frozenset[str]:
        """The service names this server serves, "" among them."""
        return self._served

    def set(self, service: str, status: int) -> None:
        """grpc_health's ``set``, for a name this server serves only: any other is the
        server's own mistake, refused (ValueError) before anything is kept."""
        if service not in self._served:
            raise ValueError(f"health status set for a service not served here: {service!r}")
        super().set(service, status)

    def Watch(  # noqa: N802 - gRPC's method name
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.ServicerContext,
        send_response_callback: Callable[[object], None] | None = None,
    ) -> None:
        """As grpc_health's (non-blocking): the current status now, and each change until
        the call ends; SERVICE_UNKNOWN, and nothing kept, for a name not served here."""
        if send_response_callback is None:
            raise TypeError("Watch is non-blocking here (as built above): it needs a callback")
        send = send_response_callback
        service = request.service
        if service not in self._served:
            send(_UNKNOWN)
            return
        with self._lock:
            # Under the lock, as grpc_health does: no ``set`` can slip a change between
            # this first status and the stream's joining the watchers.
            status = self._server_status.get(service, _UNKNOWN.status)
            send(health_pb2.HealthCheckResponse(status=status))
            self._send_response_callbacks.setdefault(service, set()).add(send)
        # grpc_health adds its close callback without looking at the answer: a call already
        # over (its client gone while it waited for a thread) never runs it, and its stream
        # stayed among the watchers for good.
        if not context.add_callback(lambda: self._unwatch(service, send)):
            self._unwatch(service, send)

    def _unwatch(self, service: str, send: Callable[[object], None]) -> None:
        with self._lock:
            self._send_response_callbacks[service].discard(send)
