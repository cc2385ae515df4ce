"""Prometheus metrics of the bank: the metric objects and the small functions that feed them.

The server, servicer, answers, authorize and process modules call the functions below;
they never see a Prometheus type. Metrics are off until ``enable`` runs in the process
that serves (a worker, after the fork): until then every function returns at once, so
tools and tests that build a bank in-process pay nothing.

Workers and the supervisor (DESIGN.md 5.4, 5.5): each worker writes its samples to files
of its own in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode); the
supervisor process serves them merged on one HTTP port (``gateway.scrape``). The client
library picks in-memory or file-backed values once, when it is first imported, from that
environment variable; so this module imports it only inside its functions, the supervisor
sets the variable (``scrape.prepare_multiprocess_directory``) before anything imports it,
and ``enable`` refuses to run where it was imported too early (samples would be lost).

Every name starts with ``setpay_`` and carries its unit. Label values come from fixed sets
only (``LABEL_VALUES``; anything else is counted as ``other``): never a PAN, an amount, an
identifier or a peer's text.

    setpay_rpc_requests_total{service,method}           handled calls
    setpay_rpc_errors_total{method,code}                SET Error code or gRPC status name
    setpay_rpc_duration_seconds{method}                 histogram, 0.5 ms to 5 s
    setpay_rpc_in_flight{method}                        calls being handled now
    setpay_rpc_shed_total{service,method}               calls refused RESOURCE_EXHAUSTED,
                                                        unhandled: the worker had
                                                        max_concurrent_rpcs in flight
                                                        (not in requests or errors; offered
                                                        load is requests + shed)
    setpay_worker_rpcs_total{worker}                    handled calls per worker process
    setpay_authorizations_total{outcome,reason}         approved/none, declined/RespReason,
                                                        error/ErrorCode (committed decisions)
    setpay_authorized_amount_minor_units{currency}      histogram of approved amounts
    setpay_replays_refused_total{kind}                  pi_reused, rrpid_reused
    setpay_answers_failed_total{method}                 committed decisions left unanswered
    setpay_certificate_cache_lookups_total{result}      hit, miss (TrustStore counters)
    setpay_ledger_commit_duration_seconds               histogram per durable commit
    setpay_ledger_commit_operations                     histogram: group size per commit
    setpay_ledger_commit_retries_total                  serialization retries (PostgreSQL)
    setpay_key_operation_duration_seconds{op,algorithm} histogram per key-backend call
    setpay_key_errors_total{op,error}                   key-backend errors by class
    setpay_key_relogins_total                           token re-logins after a loss
    setpay_key_sessions_in_use / setpay_key_sessions    PKCS#11 pool: leased now / size
    setpay_key_pool_wait_seconds_total                  summed waits for a pool session
    setpay_key_pool_leases_total                        pool sessions leased
    setpay_worker_restarts_total                        workers restarted by the supervisor
    setpay_workers                                      worker processes running
    setpay_bank_cpu_seconds_total                       CPU of all the bank's processes
                                                        (served by the supervisor alone,
                                                        ``gateway.bank_cpu``)

Errors: ``MetricsError`` (metrics cannot be turned on as configured).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gateway.ledger import Authorized, CommitStats, Declined, Outcome
from gateway.outcomes import resp_reason_for
from hsm.base import KemAlgorithm, SignatureAlgorithm
from hsm.errors import KeyBackendError
from hsm.session_pool import PoolStats
from setcore.errors import ErrorCode
from setpay.v1 import authorization_pb2, services_pb2

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from setcore.pki.truststore import TrustCounters, TrustStore

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Latency buckets from 0.5 ms (a cached, signature-only answer) to 5 s (the SQLite busy
# timeout and the default grace period): beyond that a call has failed for other reasons.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Approved amounts in minor units, 1 to 100 000 major units of a two-decimal currency.
AMOUNT_BUCKETS = (100, 1_000, 5_000, 10_000, 50_000, 100_000, 1_000_000, 10_000_000)
# Operations per ledger commit: the SQLite group commit's batches are powers of two apart.
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# How often a worker copies the trust store's and the session pool's counters into its
# metrics: scrapes come every 15 s or so, one second keeps them fresh at no cost.
SAMPLE_SECONDS = 1.0
# Worker index label values: one per possible worker (gateway.config.MAX_WORKERS).
MAX_WORKER_LABELS = 64
OTHER = "other"

# ISO 4217 numeric -> alphabetic, for the amount histogram's label: a small fixed set,
# because the currency comes from the request; any other is counted as "other".
CURRENCIES: Mapping[int, str] = {
    36: "AUD", 124: "CAD", 156: "CNY", 392: "JPY", 752: "SEK", 756: "CHF", 826: "GBP",
    840: "USD", 978: "EUR",
}  # fmt: skip


def _key_error_kinds() -> frozenset[str]:
    kinds: set[str] = set()
    pending: list[type[KeyBackendError]] = [KeyBackendError]
    while pending:
        cls = pending.pop()
        kinds.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return frozenset(kinds)


# The bank's services and the two gRPC ones every server carries beside them: a call to
# those is never handled by the bank's code, but it can be shed (``rpc_shed``).
_SERVICES = (
    *services_pb2.DESCRIPTOR.services_by_name.values(),
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
)
_ERROR_CODES = frozenset(ErrorCode.keys())
_REASONS = frozenset(authorization_pb2.RespReason.keys())
LABEL_VALUES: Mapping[str, frozenset[str]] = {
    name: values | {OTHER}
    for name, values in {
        "service": frozenset(s.full_name for s in _SERVICES),
        "method": frozenset(m.name for s in _SERVICES for m in s.methods),
        "code": frozenset(c.name for c in grpc.StatusCode) | _ERROR_CODES,
        "outcome": frozenset({"approved", "declined", "error"}),
        "reason": frozenset({"none"}) | _REASONS | _ERROR_CODES,
        "currency": frozenset(CURRENCIES.values()),
        "kind": frozenset({"pi_reused", "rrpid_reused"}),
        "result": frozenset({"hit", "miss"}),
        "op": frozenset({"sign", "decapsulate", "login", "relogin"}),
        "algorithm": frozenset(a.value for a in (*SignatureAlgorithm, *KemAlgorithm)) | {"none"},
        "error": _key_error_kinds(),
        "worker": frozenset(str(i) for i in range(MAX_WORKER_LABELS)),
    }.items()
}
"""Every label name used and the values it may take (``other`` for anything unexpected)."""

_REPLAYS: Mapping[int, str] = {
    ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED: "pi_reused",
    ErrorCode.ERROR_CODE_RRPID_REUSED: "rrpid_reused",
}


class MetricsError(Exception):
    """Metrics cannot be turned on as configured (the exporter would lose samples)."""


def _allowed(label: str, value: str) -> str:
    return value if value in LABEL_VALUES[label] else OTHER


def client_is_multiprocess() -> bool:
    """Whether prometheus_client, as imported in this process, writes samples to files."""
    from prometheus_client import values  # noqa: PLC0415 - see the module docstring

    return bool(getattr(values.ValueClass, "_multiprocess", False))


class _Children:
    """A labelled metric's children, looked up once per label values.

    ``labels()`` costs a lock and a few checks on every call: about 0.85 us here, and an
    authorization makes some ten updates. Measured in one process, in multiprocess mode,
    this took the updates of one authorization from about 23 to 17 us. Values outside
    ``LABEL_VALUES`` are counted as ``other`` and never become keys of their own, so the
    cache stays as small as the fixed label sets.
    """

    def __init__(self, metric: Counter | Gauge | Histogram, *names: str) -> None:
        self._metric = metric
        self._names = names
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        """The child for ``values`` (each mapped to ``other`` if unexpected)."""
        child = self._children.get(values)
        if child is None:
            allowed = tuple(_allowed(n, v) for n, v in zip(self._names, values, strict=True))
            child = self._children.get(allowed)
            if child is None:
                child = self._metric.labels(*allowed)
                self._children[allowed] = child
        return child


class _WorkerMetrics:
    """The metric objects of a serving process."""

    def __init__(self, worker: str, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415 - as above

        self.worker = worker
        r = registry
        self.requests = Counter(
            "setpay_rpc_requests_total", "RPCs handled", ["service", "method"], registry=r
        )
        self.errors = Counter(
            "setpay_rpc_errors_total", "RPCs answered with a SET Error code or a gRPC status",
            ["method", "code"], registry=r,
        )  # fmt: skip
        self.duration: Histogram = Histogram(
            "setpay_rpc_duration_seconds", "Time to handle an RPC", ["method"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight: Gauge = Gauge(
            "setpay_rpc_in_flight", "RPCs being handled", ["method"],
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.shed = Counter(
            "setpay_rpc_shed_total",
            "RPCs refused with RESOURCE_EXHAUSTED, unhandled, at the in-flight limit",
            ["service", "method"], registry=r,
        )  # fmt: skip
        self.worker_rpcs: Counter = Counter(
            "setpay_worker_rpcs_total", "RPCs handled by each worker process", ["worker"],
            registry=r,
        )  # fmt: skip
        self.authorizations = Counter(
            "setpay_authorizations_total", "Authorization decisions committed or refused",
            ["outcome", "reason"], registry=r,
        )  # fmt: skip
        self.amounts = Histogram(
            "setpay_authorized_amount_minor_units", "Approved authorization amounts",
            ["currency"], buckets=AMOUNT_BUCKETS, registry=r,
        )  # fmt: skip
        self.replays = Counter(
            "setpay_replays_refused_total", "Replayed requests refused", ["kind"], registry=r
        )
        self.answers_failed = Counter(
            "setpay_answers_failed_total",
            "Answers to committed ledger decisions that failed to be built or stored",
            ["method"], registry=r,
        )  # fmt: skip
        self.cache = Counter(
            "setpay_certificate_cache_lookups_total",
            "Certificate chain lookups served from the trust store's cache or validated",
            ["result"], registry=r,
        )  # fmt: skip
        self.commit_duration = Histogram(
            "setpay_ledger_commit_duration_seconds", "Time of one durable ledger commit",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.commit_operations = Histogram(
            "setpay_ledger_commit_operations", "Operations carried by one ledger commit",
            buckets=GROUP_BUCKETS, registry=r,
        )  # fmt: skip
        self.commit_retries = Counter(
            "setpay_ledger_commit_retries_total", "Ledger commit attempts retried", registry=r
        )
        self.key_duration = Histogram(
            "setpay_key_operation_duration_seconds", "Time of one key-backend operation",
            ["op", "algorithm"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.key_errors = Counter(
            "setpay_key_errors_total", "Key-backend errors", ["op", "error"], registry=r
        )
        self.relogins = Counter(
            "setpay_key_relogins_total", "Token re-logins after a lost session", registry=r
        )
        self._registry = registry
        self._pool: _PoolMetrics | None = None
        # The serving path's children (``_Children``): looked up once, not per call.
        self.my_rpcs = self.worker_rpcs.labels(worker)
        self.in_flight_of = _Children(self.in_flight, "method")
        self.requests_of = _Children(self.requests, "service", "method")
        self.duration_of = _Children(self.duration, "method")
        self.errors_of = _Children(self.errors, "method", "code")
        self.shed_of = _Children(self.shed, "service", "method")
        self.authorizations_of = _Children(self.authorizations, "outcome", "reason")
        self.amounts_of = _Children(self.amounts, "currency")
        self.key_duration_of = _Children(self.key_duration, "op", "algorithm")

    def pool(self) -> _PoolMetrics:
        """The session-pool metrics, made when a backend with a pool shows up (a software
        backend has none, and a gauge of 0 sessions would say otherwise)."""
        if self._pool is None:
            self._pool = _PoolMetrics(self._registry)
        return self._pool


class _PoolMetrics:
    """The PKCS#11 session pool's metric objects."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter, Gauge  # noqa: PLC0415 - as above

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


class _SupervisorMetrics:
    """The metric objects of the supervisor process."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge  # noqa: PLC0415 - as above

        self.restarts = Counter(
            "setpay_worker_restarts_total", "Workers restarted after dying", registry=None
        )
        self.workers = Gauge(
            "setpay_workers", "Worker processes running", multiprocess_mode="livemax",
            registry=None,
        )  # fmt: skip


class _Sinks:
    """Where this process records: None means off."""

    worker: _WorkerMetrics | None = None
    supervisor: _SupervisorMetrics | None = None


# Prometheus samples are process-wide by nature (in multiprocess mode, one set of files per
# pid), so the sinks are too. Set by enable/enable_supervisor, cleared by disable.
_sinks = _Sinks()


def enable(worker: int, registry: CollectorRegistry | None = None) -> None:
    """Turn metrics on in this serving process, labelled as worker ``worker``.

    With PROMETHEUS_MULTIPROC_DIR set, samples go to that directory for the supervisor;
    without it they stay in memory (``registry``, if given, collects them: tests).
    """
    if not 0 <= worker < MAX_WORKER_LABELS:
        raise MetricsError(f"worker index must be below {MAX_WORKER_LABELS}")
    if os.environ.get(MULTIPROC_ENV) and not client_is_multiprocess():
        raise MetricsError(
            f"prometheus_client was imported before {MULTIPROC_ENV} was set: "
            "this process's samples would never reach the scrape endpoint"
        )
    _sinks.worker = _WorkerMetrics(str(worker), registry)


def enabled() -> bool:
    """Whether this process records metrics."""
    return _sinks.worker is not None


def disable() -> None:
    """Turn metrics off in this process (tests that enabled them in-process)."""
    _sinks.worker = None
    _sinks.supervisor = None


# --- the serving path (every function is a no-op while metrics are off) ----------------


def rpc_started(method: str) -> None:
    """A call of ``method`` is being handled."""
    m = _sinks.worker
    if m is not None:
        m.in_flight_of(method).inc()


def rpc_finished(service: str, method: str, seconds: float, status: grpc.StatusCode | None) -> None:
    """A call ended after ``seconds`` with ``status`` (None or OK: answered normally)."""
    m = _sinks.worker
    if m is None:
        return
    m.in_flight_of(method).dec()
    m.requests_of(service, method).inc()
    m.duration_of(method).observe(seconds)
    m.my_rpcs.inc()
    if status is not None and status is not grpc.StatusCode.OK:
        m.errors_of(method, status.name).inc()


def rpc_shed(service: str, method: str) -> None:
    """A call of ``service``'s ``method`` was refused RESOURCE_EXHAUSTED without being
    handled: the worker had its limit of calls in flight (``gateway.server``)."""
    m = _sinks.worker
    if m is not None:
        m.shed_of(service, method).inc()


def answer_failed(method: str) -> None:
    """``method``'s decision is committed and its answer failed (gateway.answers); a
    retry of the request answers the decision."""
    m = _sinks.worker
    if m is not None:
        m.answers_failed.labels(_allowed("method", method)).inc()


def refused(method: str, code: int) -> None:
    """``method`` was answered with a signed SET Error of ``code`` (gateway.answers)."""
    m = _sinks.worker
    if m is None:
        return
    name = ErrorCode.Name(code) if code in ErrorCode.values() else OTHER
    m.errors_of(method, name).inc()
    replay = _REPLAYS.get(code)
    if replay is not None:
        m.replays.labels(replay).inc()
    if method == "Authorize":
        m.authorizations_of("error", name).inc()


def authorization_decided(outcome: Outcome) -> None:
    """The ledger committed an authorization decision (approved or declined)."""
    m = _sinks.worker
    if m is None:
        return
    if isinstance(outcome, Authorized):
        m.authorizations_of("approved", "none").inc()
        m.amounts_of(CURRENCIES.get(outcome.currency, OTHER)).observe(outcome.amount)
    elif isinstance(outcome, Declined):
        reason = authorization_pb2.RespReason.Name(resp_reason_for(outcome.reason))
        m.authorizations_of("declined", reason).inc()


def key_operation(op: str, algorithm: str, seconds: float, error_kind: str | None) -> None:
    """The key backends' observer (``hsm.observer.Observer``)."""
    m = _sinks.worker
    if m is None:
        return
    m.key_duration_of(op, algorithm or "none").observe(seconds)
    op = _allowed("op", op)
    if error_kind is not None:
        m.key_errors.labels(op, _allowed("error", error_kind)).inc()
    if op == "relogin":
        m.relogins.inc()


def ledger_commit(stats: CommitStats) -> None:
    """The ledger stores' commit observer (``gateway.ledger.CommitObserver``)."""
    m = _sinks.worker
    if m is None:
        return
    m.commit_duration.observe(stats.seconds)
    m.commit_operations.observe(stats.operations)
    if stats.retries:
        m.commit_retries.inc(stats.retries)


# --- counters kept by others, copied in the background --------------------------------


@runtime_checkable
class PooledBackend(Protocol):
    """A key backend with a session pool (the PKCS#11 backend)."""

    @property
    def pool_stats(self) -> PoolStats:
        """The pool's size, leases out now, and totals."""


class Sampler:
    """Copies the trust store's and the key backend's own counters into the metrics."""

    def __init__(self, trust: TrustStore, backend: object) -> None:
        self._trust = trust
        self._pool = backend if isinstance(backend, PooledBackend) else None
        self._lock = threading.Lock()
        self._seen_trust: TrustCounters | None = None
        self._seen_pool: PoolStats | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        """Sample every SAMPLE_SECONDS in the background while metrics are on."""
        if _sinks.worker is not None:
            self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        """Add what the counters gained since the last sample; set the pool gauges."""
        m = _sinks.worker
        if m is None:
            return
        with self._lock:
            trust = self._trust.counters
            before = self._seen_trust
            hits = trust.cache_hits - (before.cache_hits if before else 0)
            misses = trust.verifications - (before.verifications if before else 0)
            self._seen_trust = trust
            if hits > 0:
                m.cache.labels("hit").inc(hits)
            if misses > 0:
                m.cache.labels("miss").inc(misses)
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

    def stop(self) -> None:
        """Stop sampling after one last sample (the worker is going away)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SAMPLE_SECONDS * 2)
        self.sample()


# --- the supervisor's own (its endpoint is gateway.scrape) ------------------------------


def enable_supervisor(workers: int) -> None:
    """Turn on the supervisor's own metrics (after ``scrape.prepare_multiprocess_directory``)."""
    _sinks.supervisor = _SupervisorMetrics()
    _sinks.supervisor.workers.set(workers)


def worker_gone(pid: int, running: int) -> None:
    """A worker exited: drop its live gauges; ``running`` workers are left."""
    s = _sinks.supervisor
    if s is None:
        return
    _drop_live_gauges(pid)
    s.workers.set(running)


def ledger_process_gone(pid: int) -> None:
    """The ledger process exited: drop its live gauges (it has files like a worker's)."""
    if _sinks.supervisor is not None:
        _drop_live_gauges(pid)


def _drop_live_gauges(pid: int) -> None:
    # A dead process's live gauge files would be merged as if it still ran; its counter and
    # histogram files stay, so that totals never step back.
    from prometheus_client import multiprocess  # noqa: PLC0415 - as above

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def worker_restarted(running: int) -> None:
    """The supervisor started a worker in place of one that died."""
    s = _sinks.supervisor
    if s is not None:
        s.restarts.inc()
        s.workers.set(running)
