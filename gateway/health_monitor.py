"""grpc.health.v1 for a worker's server: probes of the key backend and the database, and
Watch streams that end when the server stops (``WatchEndingHealth``); ``OpenStreams``
ends the server's reflection streams so. Only the names the server serves are ever kept
(``setcore.served_health``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from hsm.errors import KeyBackendError
from setcore.served_health import ServedHealth

log = logging.getLogger("setpay.server")

# How often the health monitor probes the key backend and the database. One second keeps
# NOT_SERVING prompt for a load balancer without adding measurable load.
HEALTH_PROBE_SECONDS = 1.0

_S = TypeVar("_S")


class OpenStreams(Generic[_S]):
    """A service's open streams, which a stop ends rather than waits for: each held until
    its call is over; ``end_all`` ends those held and refuses any that starts after.

    What ends a stream is the service's own (a Watch's send callback, a reflection
    stream's context): ``end_all`` is given it, ``open`` the stream to hold."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended = False
        self._open: set[_S] = set()

    def open(self, stream: _S, context: grpc.ServicerContext) -> bool:
        """Hold ``stream`` until ``context``'s call is over; False, holding nothing, once
        ``end_all`` has run: the caller ends it at once."""
        with self._lock:
            if self._ended:
                return False
            self._open.add(stream)
        if not context.add_callback(lambda: self._forget(stream)):
            self._forget(stream)  # already over
        return True

    def _forget(self, stream: _S) -> None:
        with self._lock:
            self._open.discard(stream)

    def end_all(self, end: Callable[[_S], object]) -> None:
        """``end`` every stream held, and refuse any from now on (``open``)."""
        with self._lock:
            self._ended = True
            streams, self._open = self._open, set()
        for stream in streams:
            end(stream)


class WatchEndingHealth(ServedHealth):
    """The health servicer (``ServedHealth``), whose Watch streams end once the server is
    stopping.

    A Watch stream is a call in flight until it ends, and gRPC's ``stop(grace)`` waits for
    every call: one open stream (a load balancer's, a client's own health checking) held
    every stopping worker for its whole grace period with nothing else to finish.
    ``end_watches`` (``ServedHealth``'s) ends each stream (status OK) once NOT_SERVING has
    been sent on it, and a Watch that starts after that gets the status and its end at
    once. The health checking protocol has a client retry a Watch that ends with any
    status but UNIMPLEMENTED, and NOT_SERVING has already told it to go elsewhere. A Watch
    for a name not served here (SERVICE_UNKNOWN, kept under no name) is ended the same way.

    This class once ended the streams itself (``OpenStreams``, and a send callback that
    ignored all after its end), on the stopping thread and under a lock held across each
    send: a peer that took nothing held the drain there. ``ServedHealth`` now ends them
    on its own senders, after what was queued on each, keeping each ended stream under its
    stall watch until its call is over, which is all a worker needs.
    """


class HealthMonitor:
    """Feeds grpc.health.v1 from probes of the key backend and the database.

    A probe's failure is logged once per cause, at WARNING, then at DEBUG while it fails
    so, and its recovery at WARNING too: every probe runs each second in every worker, and a
    minute of the ledger away (its process started again while another program held the
    write lock) logged "health probe failed: StoreAway" twice a second per worker, most
    of the bank's log. A new cause is logged again at WARNING.

    A key backend's failure is logged with its message (``_cause``): on an idle bank the
    probe is the only one to meet it, and its class alone ("PermanentBackendError") hid
    what the operator must do, such as a refused PIN "not tried again until" its file
    changes."""

    def __init__(
        self,
        servicer: WatchEndingHealth,
        services: Sequence[str],
        probes: Sequence[Callable[[], None]],
        interval: float = HEALTH_PROBE_SECONDS,
    ) -> None:
        self._servicer = servicer
        self._services = ("", *services)
        # Named before the server starts: a Watch that comes before the first probe
        # publishes is told SERVICE_UNKNOWN, then each status as it is set.
        servicer.serve(services)
        self._probes = probes
        self._interval = interval
        self._stop = threading.Event()
        # Held from a probe's "still running?" check to the end of its publishing, and by
        # stop(): a probe that ends as the server stops can never publish SERVING after
        # stop() published NOT_SERVING.
        self._publishing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self.serving = False
        # Per probe (by its place in ``probes``) failing now: the cause logged.
        self._failing: dict[int, str] = {}

    def _set(self, serving: bool, *, asked: bool = False) -> None:
        """Publish ``serving`` for every name; log a change. NOT_SERVING is a warning when a
        probe failed, and a detail (DEBUG) when ``asked`` (``stop``): the stop was asked
        for, and is said once per process by whoever asked (a worker's "stop signal
        received; NOT_SERVING ..."). At WARNING, a Ctrl-C on ``setpay gateway serve`` was
        answered by four identical warnings, one per server of each worker."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._services:
            self._servicer.set(name, status)
        if serving != self.serving:
            level = logging.INFO if serving else logging.DEBUG if asked else logging.WARNING
            log.log(level, "health: %s", "SERVING" if serving else "NOT_SERVING")
        self.serving = serving

    def probe(self) -> bool:
        """Run every probe once; set and return the resulting health."""
        ok = True
        for place, probe in enumerate(self._probes):
            try:
                probe()
            except Exception as exc:  # noqa: BLE001 - any failure means not serving
                self._failed(place, _cause(exc))
                ok = False
            else:
                cause = self._failing.pop(place, None)
                if cause is not None:
                    # At the failure's level: at the default one (WARNING) the log
                    # ended on the failure, the bank serving again.
                    log.warning("health probe passes again (it failed: %s)", cause)
        with self._publishing:
            if not self._stop.is_set():
                self._set(ok)
        return ok

    def _failed(self, place: int, cause: str) -> None:
        """Log that the probe at ``place`` failed of ``cause``: at WARNING unless it failed
        so last time (the class docstring)."""
        repeated = self._failing.get(place) == cause
        self._failing[place] = cause
        log.log(logging.DEBUG if repeated else logging.WARNING, "health probe failed: %s",
                cause)  # fmt: skip

    def start(self) -> None:
        """Probe once now, then every interval in the background."""
        self.probe()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.probe()

    def stop(self) -> None:
        """Stop probing, report NOT_SERVING (the server is going away), and then end the
        Watch streams, which would otherwise hold the server's stop for its grace period."""
        with self._publishing:
            self._stop.set()
            self._set(False, asked=True)
        self._servicer.end_watches()


def _cause(exc: Exception) -> str:
    """What a probe's failure is logged as, and told from another by: a key backend's
    error with its message (written to show no PIN, passphrase or key: the same words
    ``gateway.answers`` logs for an RPC), anything else by its class alone (a database
    driver's message may hold its connection string, password and all)."""
    name = type(exc).__name__
    return f"{name}: {exc}" if isinstance(exc, KeyBackendError) else name
