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
only (``gateway.metrics_labels``; anything else is counted as ``other``): never a PAN, an
amount, an identifier or a peer's text.

    setpay_rpc_requests_total{service,method}           handled calls
    setpay_rpc_errors_total{method,code}                SET Error code or gRPC status name;
                                                        DEADLINE_EXCEEDED or CANCELLED for
                                                        a call whose client gave up (not
                                                        handled if it gave up waiting for
                                                        the worker's turn)
    setpay_rpc_duration_seconds{method}                 histogram, 0.5 ms to 5 s
    setpay_rpc_in_flight{method}                        calls being handled now
    setpay_rpc_shed_total{service,method}               calls refused RESOURCE_EXHAUSTED,
                                                        unhandled: the worker had
                                                        max_concurrent_rpcs in flight.
                                                        Not in requests or errors: for the
                                                        bank's two services, requests +
                                                        shed is the load offered, short of
                                                        the calls past gRPC's backstop
                                                        (``gateway.admission``), which are
                                                        refused uncounted. Health and
                                                        reflection calls are counted here
                                                        when shed, never in requests
    setpay_worker_rpcs_total{worker}                    handled calls per worker process
    setpay_authorizations_total{outcome,reason}         approved/none and declined/RespReason
                                                        (decisions committed), error/ErrorCode
                                                        (every signed SET Error answered to
                                                        Authorize, none committed: each
                                                        merchant retry after
                                                        UNSPECIFIED_FAILURE counted again)
    setpay_authorized_amount_minor_units{currency}      histogram of approved amounts
    setpay_replays_refused_total{kind}                  pi_reused, rrpid_reused
    setpay_answers_failed_total{method}                 committed decisions left unanswered
    setpay_certificate_cache_lookups_total{result}      hit, miss (TrustStore counters)
    setpay_revocation_refresh_failures_total{step}      failed refreshes of the revocation
                                                        data: publish (re-publishing the
                                                        CRLs and BCI: key backend, ca.db),
                                                        install (ca.db's newest BCI: ca.db,
                                                        a BCI that does not verify)
    setpay_revocation_valid_until_seconds               when the revocation data held stops
                                                        being current, Unix seconds: the
                                                        earliest of the live workers'
                                                        (alert when under 6 h away; past
                                                        it, certificates cannot be judged
                                                        and calls are answered UNAVAILABLE)
    setpay_tls_certificate_valid_until_seconds          when the TLS server certificate the
                                                        workers serve ends (notAfter), Unix
                                                        seconds: the earliest of the live
                                                        workers' (alert when under 14 days
                                                        away; past it every handshake
                                                        fails)
    setpay_ca_housekeeping_failures_total{cause}        failed sweeps of ca.db's expired
                                                        sessions and old answers, each
                                                        tried again a minute later: busy
                                                        (skipped: another connection was
                                                        writing), outage (I/O, full,
                                                        damaged),
                                                        bug (anything else: every sweep
                                                        fails until it is mended)
    setpay_ledger_commit_duration_seconds               histogram per durable commit
    setpay_ledger_commit_operations                     histogram: group size per commit
    setpay_ledger_commit_retries_total                  serialization retries (PostgreSQL)
    setpay_ledger_holds_expired_total                   expired holds the hold sweeper
                                                        released (worker 0; a decision's
                                                        own releases are not counted)
    setpay_key_operation_duration_seconds{op,algorithm} histogram per key-backend call,
                                                        25 us to 1 s (KEY_BUCKETS)
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

Counters at zero from the start. A labelled series appears at its first increment, and
``increase()`` cannot see that first one: an alert on it would miss the first shed call or
the first failed refresh. So ``enable`` creates, at zero, every label combination a
counter can take where those are few: requests and shed calls by method of the bank's two
services (not gRPC's health and reflection services, which the bank's code never handles);
authorizations by outcome and reason; replays by kind; failed answers by method of the
payment gateway; key-backend errors by op and error class (the one product: four ops by a
dozen classes); certificate cache lookups by result; failed refreshes by step; failed
sweeps by cause. Unlabelled counters are at zero anyway, and each worker's own
``setpay_worker_rpcs_total`` series is made at start. Left to appear at their first:
errors by method and code (every method by every gRPC status and SET code, some 700
series per worker, nearly all forever 0: alert on their rate next to the requests'), and
the histograms and the in-flight gauge, which are read as rates, quantiles and levels,
where a missing first sample costs nothing.

Where things are: this module (turning metrics on, what the serving code calls);
``metrics_labels`` (the label sets and the combinations above); ``metrics_sampler`` (the
counters kept by the trust store, the session pool, the revocation watcher and the CA's
ca.db sweeps, copied in the background); ``metrics_supervisor`` (the supervisor's own,
and dead processes' files); ``metrics_files`` (the sample files: their disk blocks
reserved, so that a full disk turns a process's metrics off, said in one ERROR line, and
does not kill it; and the files of the processes gone, folded into one per type).

Errors: ``MetricsError`` (metrics cannot be turned on as configured).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import grpc

from gateway import metrics_sampler, metrics_supervisor
from gateway.ledger import Authorized, CommitStats, Declined, Outcome
from gateway.metrics_files import (
    MULTIPROC_ENV,
    MetricsError,
    SampleSpaceError,
    on_full,
    reserve_sample_files,
    samples_full,
    until_full,
)
from gateway.metrics_labels import (
    AUTHORIZATION_LABELS,
    BANK_RPCS,
    CURRENCIES,
    KEY_ERROR_LABELS,
    LABEL_VALUES,
    MAX_WORKER_LABELS,
    OTHER,
    REPLAY_KINDS,
    Children,
    allowed,
)
from gateway.metrics_sampler import Sampler
from gateway.metrics_supervisor import (
    enable_supervisor,
    ledger_process_gone,
    worker_gone,
    worker_restarted,
)
from gateway.outcomes import resp_reason_for
from setcore.errors import ErrorCode
from setpay.v1 import authorization_pb2, services_pb2

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "LABEL_VALUES",
    "MAX_WORKER_LABELS",
    "MULTIPROC_ENV",
    "OTHER",
    "MetricsError",
    "Sampler",
    "answer_failed",
    "authorization_decided",
    "client_is_multiprocess",
    "disable",
    "enable",
    "enable_supervisor",
    "enabled",
    "key_operation",
    "ledger_commit",
    "ledger_process_gone",
    "refused",
    "rpc_finished",
    "rpc_shed",
    "rpc_started",
    "tls_certificate_valid_until",
    "worker_gone",
    "worker_restarted",
]

# Latency buckets from 0.5 ms (a cached, signature-only answer) to 5 s (the SQLite busy
# timeout and the default grace period): beyond that a call has failed for other reasons.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Key-backend operations from 25 us (a software EC signature or ECDH, tens of microseconds)
# through a token's EC operations (a fraction of a millisecond on SoftHSM) and its RSA
# signatures (milliseconds) to 1 s (a token session awaited or a re-login): the RPC
# buckets start at 0.5 ms, where every EC operation fell into the first bucket.
KEY_BUCKETS = (
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
)  # fmt: skip
# Approved amounts in minor units, 1 to 100 000 major units of a two-decimal currency.
AMOUNT_BUCKETS = (100, 1_000, 5_000, 10_000, 50_000, 100_000, 1_000_000, 10_000_000)
# Operations per ledger commit: the SQLite group commit's batches are powers of two apart.
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_REPLAYS: dict[int, str] = {
    ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED: "pi_reused",
    ErrorCode.ERROR_CODE_RRPID_REUSED: "rrpid_reused",
}
# Decisions whose answer can fail after the commit (``gateway.answers``): the gateway's.
_GATEWAY_METHODS = tuple(
    m.name for m in services_pb2.DESCRIPTOR.services_by_name["PaymentGatewayService"].methods
)


def client_is_multiprocess() -> bool:
    """Whether prometheus_client, as imported in this process, writes samples to files."""
    from prometheus_client import values  # noqa: PLC0415 - see the module docstring

    return bool(getattr(values.ValueClass, "_multiprocess", False))


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
        self.holds_expired = Counter(
            "setpay_ledger_holds_expired_total",
            "Expired holds the hold sweeper released", registry=r,
        )  # fmt: skip
        self.key_duration = Histogram(
            "setpay_key_operation_duration_seconds", "Time of one key-backend operation",
            ["op", "algorithm"], buckets=KEY_BUCKETS, registry=r,
        )  # fmt: skip
        self.key_errors = Counter(
            "setpay_key_errors_total", "Key-backend errors", ["op", "error"], registry=r
        )
        self.relogins = Counter(
            "setpay_key_relogins_total", "Token re-logins after a lost session", registry=r
        )
        self.registry = r
        self.tls_valid_until: Gauge | None = None  # made with its value: see its setter
        # The serving path's children (``Children``): looked up once, not per call.
        self.my_rpcs = self.worker_rpcs.labels(worker)
        self.in_flight_of = Children(self.in_flight, "method")
        self.requests_of = Children(self.requests, "service", "method")
        self.duration_of = Children(self.duration, "method")
        self.errors_of = Children(self.errors, "method", "code")
        self.shed_of = Children(self.shed, "service", "method")
        self.authorizations_of = Children(self.authorizations, "outcome", "reason")
        self.amounts_of = Children(self.amounts, "currency")
        self.key_duration_of = Children(self.key_duration, "op", "algorithm")
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        """Create the counters' series at zero (the module docstring says which, and why
        not the others)."""
        for service, method in BANK_RPCS:
            self.requests_of(service, method)
            self.shed_of(service, method)
        for outcome, reason in AUTHORIZATION_LABELS:
            self.authorizations_of(outcome, reason)
        for kind in REPLAY_KINDS:
            self.replays.labels(kind)
        for method in _GATEWAY_METHODS:
            self.answers_failed.labels(method)
        for op, error in KEY_ERROR_LABELS:
            self.key_errors.labels(op, error)


class _Sinks:
    """Where this process records: None means off."""

    worker: _WorkerMetrics | None = None


# Prometheus samples are process-wide by nature (in multiprocess mode, one set of files per
# pid), so the sinks are too. Set by enable, cleared by disable.
_sinks = _Sinks()


def enable(worker: int, registry: CollectorRegistry | None = None) -> None:
    """Turn metrics on in this serving process, labelled as worker ``worker``.

    With PROMETHEUS_MULTIPROC_DIR set, samples go to that directory for the supervisor;
    without it they stay in memory (``registry``, if given, collects them: tests). A full
    disk there leaves them off, said in one ERROR line (``metrics_files``).
    """
    if not 0 <= worker < MAX_WORKER_LABELS:
        raise MetricsError(f"worker index must be below {MAX_WORKER_LABELS}")
    on_full(disable)
    try:
        if os.environ.get(MULTIPROC_ENV):
            if not client_is_multiprocess():
                raise MetricsError(
                    f"prometheus_client was imported before {MULTIPROC_ENV} was set: "
                    "this process's samples would never reach the scrape endpoint"
                )
            reserve_sample_files()
        _sinks.worker = _WorkerMetrics(str(worker), registry)
        metrics_sampler.enable(registry)
    except SampleSpaceError as exc:
        samples_full(exc)


def enabled() -> bool:
    """Whether this process records metrics."""
    return _sinks.worker is not None


def disable() -> None:
    """Turn metrics off in this process (tests that enabled them in-process)."""
    _sinks.worker = None
    metrics_sampler.disable()
    metrics_supervisor.disable()


# --- the serving path (every function is a no-op while metrics are off; ``until_full``:
# turns them off where a new series needs disk blocks that cannot be reserved) -----------


@until_full
def rpc_started(method: str) -> None:
    """A call of ``method`` is being handled."""
    m = _sinks.worker
    if m is not None:
        m.in_flight_of(method).inc()


@until_full
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


@until_full
def rpc_shed(service: str, method: str) -> None:
    """A call of ``service``'s ``method`` was refused RESOURCE_EXHAUSTED without being
    handled: the worker had its limit of calls in flight (``gateway.admission``'s refusal;
    gRPC's backstop refuses without calling this)."""
    m = _sinks.worker
    if m is not None:
        m.shed_of(service, method).inc()


@until_full
def answer_failed(method: str) -> None:
    """``method``'s decision is committed and its answer failed (gateway.answers); a
    retry of the request answers the decision."""
    m = _sinks.worker
    if m is not None:
        m.answers_failed.labels(allowed("method", method)).inc()


@until_full
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


@until_full
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


@until_full
def key_operation(op: str, algorithm: str, seconds: float, error_kind: str | None) -> None:
    """The key backends' observer (``hsm.observer.Observer``)."""
    m = _sinks.worker
    if m is None:
        return
    m.key_duration_of(op, algorithm or "none").observe(seconds)
    op = allowed("op", op)
    if error_kind is not None:
        m.key_errors.labels(op, allowed("error", error_kind)).inc()
    if op == "relogin":
        m.relogins.inc()


@until_full
def tls_certificate_valid_until(seconds: float) -> None:
    """The TLS server certificate this process serves ends at ``seconds`` (Unix)."""
    m = _sinks.worker
    if m is None:
        return
    if m.tls_valid_until is None:
        from prometheus_client import Gauge  # noqa: PLC0415 - see the module docstring

        # livemin: the page shows the earliest end a live worker serves (a worker started
        # before the file was replaced serves the old one), and a dead worker's file does
        # not hold it. Made with its value, as setpay_revocation_valid_until_seconds is: a
        # gauge made at enable would read 0, long ended, until the bank had started.
        m.tls_valid_until = Gauge(
            "setpay_tls_certificate_valid_until_seconds",
            "When the TLS server certificate served ends (notAfter), Unix seconds",
            multiprocess_mode="livemin", registry=m.registry,
        )  # fmt: skip
    m.tls_valid_until.set(seconds)


def holds_expired(count: int) -> None:
    """The hold sweeper's batch observer (``gateway.ledger.sweeper.BatchObserver``)."""
    m = _sinks.worker
    if m is not None and count > 0:
        m.holds_expired.inc(count)


def ledger_commit(stats: CommitStats) -> None:
    """The ledger stores' commit observer (``gateway.ledger.CommitObserver``)."""
    m = _sinks.worker
    if m is None:
        return
    m.commit_duration.observe(stats.seconds)
    m.commit_operations.observe(stats.operations)
    if stats.retries:
        m.commit_retries.inc(stats.retries)
