"""Counters kept by others, copied into a worker's metrics in the background.

The trust store counts its certificate cache's hits and misses, the PKCS#11 session pool
its leases and waits, the revocation watcher its failed refresh steps, the certificate
authority its failed sweeps of ca.db; none of them knows of Prometheus. ``Sampler``
reads them every SAMPLE_SECONDS and adds what they gained, and sets the gauges of what
they hold now: the pool's sessions, and when the revocation data held stops being
current. Its metric objects are made by ``enable`` (``gateway.metrics`` calls it), once
per process, like the rest of a worker's.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.metrics_files import until_full
from gateway.metrics_labels import CACHE_RESULTS, HOUSEKEEPING_CAUSES, REFRESH_STEPS
from hsm.session_pool import PoolStats

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge

    from gateway.ca.authority import HousekeepingCounters
    from gateway.ca.watcher import WatcherCounters
    from setcore.pki.truststore import TrustCounters, TrustStore

# How often a worker copies the counters into its metrics: scrapes come every 15 s or so,
# one second keeps them fresh at no cost.
SAMPLE_SECONDS = 1.0


@runtime_checkable
class PooledBackend(Protocol):
    """A key backend with a session pool (the PKCS#11 backend)."""

    @property
    def pool_stats(self) -> PoolStats:
        """The pool's size, leases out now, and totals."""


class RevocationHealth(Protocol):
    """What the revocation watcher tells of itself (``gateway.ca.watcher.RevocationWatcher``)."""

    @property
    def counters(self) -> WatcherCounters:
        """Failed refresh steps so far."""

    def held_until(self) -> datetime | None:
        """Until when the revocation data held is current; None while none is held."""


class HousekeepingHealth(Protocol):
    """What the CA tells of its ca.db sweeps (``gateway.ca.authority.CertificateAuthority``)."""

    @property
    def housekeeping(self) -> HousekeepingCounters:
        """Failed sweeps so far, by cause."""


class _PoolMetrics:
    """The PKCS#11 session pool's metric objects."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter, Gauge  # noqa: PLC0415 - see gateway.metrics

        r = registry
        self.in_use = Gauge(
            "setpay_key_sessions_in_use", "PKCS#11 pool sessions leased now",
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.size = Gauge(
            "setpay_key_sessions", "PKCS#11 pool size", multiprocess_mode="livesum", registry=r
        )
        self.wait = Counter(
            "setpay_key_pool_wait_seconds_total", "Time spent waiting for a pool session",
            registry=r,
        )  # fmt: skip
        self.leases = Counter(
            "setpay_key_pool_leases_total", "PKCS#11 pool sessions leased", registry=r
        )


class _SampledMetrics:
    """The metric objects the sampler feeds, in one process."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter  # noqa: PLC0415 - see gateway.metrics

        self._registry = registry
        self.cache = Counter(
            "setpay_certificate_cache_lookups_total",
            "Certificate chain lookups served from the trust store's cache or validated",
            ["result"], registry=registry,
        )  # fmt: skip
        self.refresh_failures = Counter(
            "setpay_revocation_refresh_failures_total",
            "Failed steps of refreshing the revocation data (publish: re-publishing the "
            "CRLs and BCI; install: installing ca.db's newest BCI)",
            ["step"], registry=registry,
        )  # fmt: skip
        self.housekeeping_failures = Counter(
            "setpay_ca_housekeeping_failures_total",
            "Failed sweeps of ca.db's expired sessions and old stored answers (busy: "
            "skipped, another connection was writing; outage: ca.db could not be used; "
            "bug: anything else)",
            ["cause"], registry=registry,
        )  # fmt: skip
        # At zero from the start: an alert on increase() sees the first failure too.
        for result in CACHE_RESULTS:
            self.cache.labels(result)
        for step in REFRESH_STEPS:
            self.refresh_failures.labels(step)
        for cause in HOUSEKEEPING_CAUSES:
            self.housekeeping_failures.labels(cause)
        self._pool: _PoolMetrics | None = None
        self._valid_until: Gauge | None = None

    def pool(self) -> _PoolMetrics:
        """The session-pool metrics, made when a backend with a pool shows up (a software
        backend has none, and a gauge of 0 sessions would say otherwise)."""
        if self._pool is None:
            self._pool = _PoolMetrics(self._registry)
        return self._pool

    def valid_until(self, seconds: float) -> None:
        """Set when the revocation data held stops being current (Unix seconds)."""
        if self._valid_until is None:
            from prometheus_client import Gauge  # noqa: PLC0415 - see gateway.metrics

            # livemin: the page shows the earliest end any worker holds, which is what an
            # alert must see; and only live workers', because a dead worker's file would
            # hold the page at its old end for good (``worker_gone`` removes the live
            # gauges' files; plain "min" keeps them). Made with its first value, not at
            # enable: until set it reads 0, long lapsed, and that 0 would be the page's
            # (for the microseconds between these two lines, it is).
            self._valid_until = Gauge(
                "setpay_revocation_valid_until_seconds",
                "When the revocation data held stops being current (the BCI's notAfter or "
                "a listed CRL's nextUpdate, if sooner), Unix seconds; 0 if none is held",
                multiprocess_mode="livemin", registry=self._registry,
            )  # fmt: skip
        self._valid_until.set(seconds)


class _Sink:
    """Where this process's sampler records: None means off."""

    metrics: _SampledMetrics | None = None


# Process-wide like the rest of the metrics (``gateway.metrics``); set by enable, cleared
# by disable.
_sink = _Sink()


def enable(registry: CollectorRegistry | None) -> None:
    """Make this process's sampled metric objects (``gateway.metrics.enable`` calls it)."""
    _sink.metrics = _SampledMetrics(registry)


def disable() -> None:
    """Drop them (``gateway.metrics.disable``)."""
    _sink.metrics = None


class Sampler:
    """Copies the trust store's, the key backend's, the revocation watcher's and the CA's
    counters into the metrics (the CA's sweeps: when ``housekeeping`` is given)."""

    def __init__(
        self,
        trust: TrustStore,
        backend: object,
        revocation: RevocationHealth,
        housekeeping: HousekeepingHealth | None = None,
    ) -> None:
        self._trust = trust
        self._pool = backend if isinstance(backend, PooledBackend) else None
        self._revocation = revocation
        self._housekeeping = housekeeping
        self._lock = threading.Lock()
        self._seen_trust: TrustCounters | None = None
        self._seen_pool: PoolStats | None = None
        self._seen_refresh: WatcherCounters | None = None
        self._seen_sweeps: HousekeepingCounters | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        """Sample now, then every SAMPLE_SECONDS in the background, while metrics are on.

        Now: so that the page has the revocation data's end from the worker's first
        moment of serving, if this runs before the servers start (``gateway.process``
        starts it before it creates them)."""
        if _sink.metrics is not None:
            self.sample()
            self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    @until_full
    def sample(self) -> None:
        """Add what the counters gained since the last sample; set the gauges (a gauge
        made with its first value needs a new series: ``until_full``)."""
        m = _sink.metrics
        if m is None:
            return
        with self._lock:
            self._sample_trust(m)
            self._sample_revocation(m)
            self._sample_housekeeping(m)
            if self._pool is None:
                return
            pool = self._pool.pool_stats
            seen = self._seen_pool
            self._seen_pool = pool
        p = m.pool()
        p.in_use.set(pool.in_use)
        p.size.set(pool.size)
        if seen is None or pool.leases < seen.leases:  # first sample, or a pool reset
            seen = PoolStats(pool.size, 0, 0, 0.0)
        if pool.leases > seen.leases:
            p.leases.inc(pool.leases - seen.leases)
            p.wait.inc(max(0.0, pool.wait_seconds - seen.wait_seconds))

    def _sample_trust(self, m: _SampledMetrics) -> None:
        trust = self._trust.counters
        before = self._seen_trust
        self._seen_trust = trust
        hits = trust.cache_hits - (before.cache_hits if before else 0)
        misses = trust.verifications - (before.verifications if before else 0)
        if hits > 0:
            m.cache.labels("hit").inc(hits)
        if misses > 0:
            m.cache.labels("miss").inc(misses)

    def _sample_revocation(self, m: _SampledMetrics) -> None:
        failed = self._revocation.counters
        before = self._seen_refresh
        self._seen_refresh = failed
        gained = {
            "publish": failed.publish_failures - (before.publish_failures if before else 0),
            "install": failed.install_failures - (before.install_failures if before else 0),
        }
        for step, count in gained.items():
            if count > 0:
                m.refresh_failures.labels(step).inc(count)
        until = self._revocation.held_until()
        # None held: as lapsed as can be, and the alert on it fires, as it should.
        m.valid_until(0.0 if until is None else until.timestamp())

    def _sample_housekeeping(self, m: _SampledMetrics) -> None:
        if self._housekeeping is None:
            return
        failed = self._housekeeping.housekeeping
        before = self._seen_sweeps
        self._seen_sweeps = failed
        for cause, counted_in in HOUSEKEEPING_CAUSES.items():
            count = getattr(failed, counted_in) - (getattr(before, counted_in) if before else 0)
            if count > 0:
                m.housekeeping_failures.labels(cause).inc(count)

    def stop(self) -> None:
        """Stop sampling after one last sample (the worker is going away)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SAMPLE_SECONDS * 2)
        self.sample()
