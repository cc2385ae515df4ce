"""Prometheus metrics of the merchant: the metric objects, what feeds them, and their page.

``setpay merchant serve --metrics-port P`` (or ``server.metrics_port`` in merchant.toml)
turns them on (``start``): the merchant is one process (its gRPC server, authorization
worker and resume rounds are threads), so its samples live in a private registry, served
(``metrics_http``: a few connections at once, each for a bounded time) on a thread of its
own and stopped with the merchant.
Until ``start`` every function below returns at once: the CLI's capture, refund and
batch commands, tools and tests that open a merchant pay nothing. prometheus_client is
imported only inside ``start``: it picks file-backed values when first imported if
PROMETHEUS_MULTIPROC_DIR is set, which the bank's ``setpay gateway serve`` sets after
the CLI imported its subcommands (``gateway.metrics``).

The servicer, answers, checkout and gateway client call the functions below; they never
see a Prometheus type. Every name starts with ``setpay_merchant_`` and carries its unit.
Label values come from fixed sets only (``clients.merchant.metrics_labels``; anything
else is counted as ``other``): never a PAN (the merchant has none), an amount, an XID, a
merchant id, a peer's text or key material.

    setpay_merchant_rpc_requests_total{method}          calls of PInit, Purchase, Inquiry
                                                        handled
    setpay_merchant_rpc_errors_total{method,code}       answered with a signed SET Error
                                                        (its ErrorCode) or a gRPC status
                                                        (its name: UNAVAILABLE when the
                                                        merchant's store, keys or gateway
                                                        fail it)
    setpay_merchant_rpc_duration_seconds{method}        histogram, 1 ms to 30 s (a
                                                        Purchase may wait on the gateway)
    setpay_merchant_rpc_in_flight{method}               calls being handled now
    setpay_merchant_rpc_shed_total{method}              calls refused RESOURCE_EXHAUSTED,
                                                        unhandled, with a retry delay: the
                                                        limit of calls in flight was
                                                        reached (``other``: a health check
                                                        past its reserve); not counted in
                                                        the requests
    setpay_merchant_purchases_total{completion}         PRes sent, by the CompletionCode it
                                                        reports (a Purchase repeated is
                                                        answered, and counted, again); not
                                                        one whose wallet gave up first
    setpay_merchant_purchases_diverted_total            Purchases left to the worker, no place
                                                        free (``checkout.gateway_waits``)
    setpay_merchant_gateway_calls_total{kind,result}    requests sent to the gateway, by
                                                        kind (authorization, capture,
                                                        capture-reversal, credit,
                                                        credit-reversal, auth-reversal,
                                                        batch, gateway-certificates) and
                                                        result: approved or declined (its
                                                        answer verified and said yes or
                                                        no), other (it verified, but its
                                                        result code is of a later release;
                                                        or a verified SET Error of a code
                                                        of a later release), a SET
                                                        ErrorCode (the gateway's
                                                        verified Error), unverified (an
                                                        answer that did not verify),
                                                        revocation_unavailable (one that
                                                        could not be checked yet),
                                                        merchant_failure (the merchant's
                                                        own keys or store failed on it, or
                                                        the gateway certificates it needed
                                                        were refused), or
                                                        a gRPC status name (no answer,
                                                        after the bounded retries). All
                                                        but approved, declined and a final
                                                        ErrorCode leave the request's
                                                        outcome unknown: it stays waiting
    setpay_merchant_gateway_call_duration_seconds{kind} histogram, 1 ms to 30 s: the call
                                                        with its retries and the check of
                                                        its answer
    setpay_merchant_requests_waiting{kind}              requests stored and still waiting
                                                        for the gateway's final answer
                                                        (read from merchant.db at each
                                                        scrape: those of the CLI's commands
                                                        too)
    setpay_merchant_requests_unverified{kind}           of those, the ones whose last
                                                        answer did not verify (asked again
                                                        less and less often: someone must
                                                        look)
    setpay_merchant_requests_unreadable{kind}           of those, the ones answered (and
                                                        verified) with a result code this
                                                        release cannot read: upgrade the
                                                        merchant (asked again less and
                                                        less often, never built afresh)
    setpay_merchant_waiting_read_failures_total         scrapes that could not read them
                                                        (the three gauges are then left out)

Counters at zero from the start, where their series are few: requests and shed calls by
method, purchases by completion, gateway calls by kind with approved and declined; the
read failures. Left to appear at their first: errors by method and code, gateway calls with
any other result (each a product of large sets, nearly all forever 0: alert on their
rate next to the requests'), and the histograms and in-flight gauge, read as rates,
quantiles and levels. The waiting gauges show every kind, at 0 when none waits.

Errors: ``clients.errors.ConfigError`` (metrics cannot be served as configured).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import grpc

from clients.errors import ConfigError, StoreError, TransportError
from clients.merchant.metrics_http import PageServer, serve_page
from clients.merchant.metrics_labels import (
    COMPLETIONS,
    DECLINED,
    GATEWAY_CALL_LABELS,
    GATEWAY_CERTIFICATES,
    LABEL_VALUES,
    MERCHANT_FAILURE,
    MERCHANT_METHODS,
    OTHER,
    REVOCATION_UNAVAILABLE,
    UNVERIFIED,
    WAITING_KINDS,
    allowed,
    answered,
)
from clients.merchant.store import WaitingRequests
from setcore.admission import given_up
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.pki.bci import RevocationUnavailable
from setpay.v1 import purchase_pb2, services_pb2

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = [
    "LABEL_VALUES", "OTHER", "MetricsEndpoint", "enabled", "gateway_call", "purchase_answered",
    "purchase_diverted", "refused", "rpc_shed", "served", "start",
]  # fmt: skip

log = logging.getLogger("setpay.merchant.metrics")

P = ParamSpec("P")
R = TypeVar("R")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_SERVICE = services_pb2.DESCRIPTOR.services_by_name["MerchantService"].full_name
# Latency buckets from 1 ms (a PInit: one signature) to 30 s (the gateway's Authorize
# deadline, ``gateway_client.AUTHORIZE_DEADLINE_SECONDS``, which a Purchase answered after
# authorization may wait out): past it a call has failed for other reasons.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Metrics:
    """The metric objects of a serving merchant (``_Page`` shows them)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415 - see above

        r = None  # in no registry: ``_Page`` collects them
        self.requests = Counter(
            "setpay_merchant_rpc_requests_total", "Merchant service calls handled", ["method"],
            registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "setpay_merchant_rpc_errors_total",
            "Merchant service calls answered with a SET Error code or a gRPC status",
            ["method", "code"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "setpay_merchant_rpc_duration_seconds", "Time to handle a Merchant service call",
            ["method"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "setpay_merchant_rpc_in_flight", "Merchant service calls being handled", ["method"],
            registry=r,
        )  # fmt: skip
        self.shed = Counter(
            "setpay_merchant_rpc_shed_total",
            "Merchant service calls refused unhandled: too many in flight", ["method"],
            registry=r,
        )  # fmt: skip
        self.purchases = Counter(
            "setpay_merchant_purchases_total", "PRes sent, by the completion they report",
            ["completion"], registry=r,
        )  # fmt: skip
        self.diverted = Counter(
            "setpay_merchant_purchases_diverted_total", "Purchases left to the worker", registry=r
        )
        self.gateway_calls = Counter(
            "setpay_merchant_gateway_calls_total", "Requests sent to the payment gateway",
            ["kind", "result"], registry=r,
        )  # fmt: skip
        self.gateway_duration = Histogram(
            "setpay_merchant_gateway_call_duration_seconds",
            "Time of a gateway call, its retries and the check of its answer", ["kind"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.all = (
            self.requests, self.errors, self.duration, self.in_flight, self.shed,
            self.purchases, self.diverted, self.gateway_calls, self.gateway_duration,
        )  # fmt: skip
        for method in MERCHANT_METHODS:
            self.requests.labels(method)
            self.shed.labels(method)
        for completion in COMPLETIONS:
            self.purchases.labels(completion)
        for kind, result in GATEWAY_CALL_LABELS:
            self.gateway_calls.labels(kind, result)


class _WaitingCollector:
    """The waiting requests, read from merchant.db at each scrape (``WaitingRequests``)."""

    def __init__(self, waiting: WaitingRequests) -> None:
        self._waiting = waiting
        self._failures = 0
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        """Read the counts now; on a failure, count it and leave the gauges out."""
        counts: dict[str, tuple[int, int, int]] | None
        try:
            counts = self._read()
        except StoreError as exc:
            log.warning("waiting requests not read for this scrape: %s", exc)
            counts = None
        with self._lock:
            self._failures += counts is None
            failures = self._failures
        yield from self._families(counts, failures)

    def _read(self) -> dict[str, tuple[int, int, int]]:
        """(waiting, unverified, unreadable) by kind, every kind there (0 where none waits)."""
        counts = dict.fromkeys(WAITING_KINDS, (0, 0, 0))
        for row in self._waiting.counts():
            kind = allowed("kind", row.kind)
            count, unverified, unreadable = counts.get(kind, (0, 0, 0))
            counts[kind] = (
                count + row.count,
                unverified + row.unverified,
                unreadable + row.unreadable,
            )
        return counts

    @staticmethod
    def _families(
        counts: dict[str, tuple[int, int, int]] | None, failures: int
    ) -> Iterator[Metric]:
        from prometheus_client.core import (  # noqa: PLC0415 - see the module docstring
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        if counts is not None:
            waiting = GaugeMetricFamily(
                "setpay_merchant_requests_waiting",
                "Requests stored and waiting for the gateway's final answer", labels=["kind"],
            )  # fmt: skip
            unverified = GaugeMetricFamily(
                "setpay_merchant_requests_unverified",
                "Requests waiting whose last answer did not verify", labels=["kind"],
            )  # fmt: skip
            unreadable = GaugeMetricFamily(
                "setpay_merchant_requests_unreadable",
                "Requests waiting answered with a result code this release cannot read",
                labels=["kind"],
            )  # fmt: skip
            for kind, (count, doubtful, unread) in counts.items():
                waiting.add_metric([kind], count)
                unverified.add_metric([kind], doubtful)
                unreadable.add_metric([kind], unread)
            yield waiting
            yield unverified
            yield unreadable
        yield CounterMetricFamily(
            "setpay_merchant_waiting_read_failures",
            "Scrapes that could not read the waiting requests", value=failures,
        )  # fmt: skip


class _Page:
    """What the page shows: the metric objects' samples but the ``_created`` ones, then
    the waiting requests. A ``_created`` sample is when a series was made: twice the
    series for a time no alert reads, and the bank's page (multiprocess) has none."""

    def __init__(self, metrics: _Metrics, waiting: _WaitingCollector) -> None:
        self._metrics = metrics
        self._waiting = waiting

    def collect(self) -> Iterator[Metric]:
        """Every family, read now."""
        for metric in self._metrics.all:
            for family in metric.collect():
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                yield family
        yield from self._waiting.collect()


class _Sinks:
    """Where this process records: None means off."""

    metrics: _Metrics | None = None


# The serving code reaches the metrics from deep inside (the gateway client, the answers)
# without a merchant at hand, as the bank's does: one merchant serves per process, so the
# sinks are process-wide. Set by ``start``, cleared by ``MetricsEndpoint.close``.
_sinks = _Sinks()
# The completions of the PRes a served call is about to send, per thread (a call runs on
# one): counted by ``served`` once the call ends with its client still there, as its
# requests are, so a PRes whose wallet gave up before it was sent is not counted sent.
_answering = threading.local()


class MetricsEndpoint:
    """The merchant's metrics page, served from a thread until ``close``."""

    def __init__(
        self, server: PageServer, thread: threading.Thread, waiting: WaitingRequests
    ) -> None:
        self._server = server
        self._thread = thread
        self._waiting = waiting

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving the page and recording (closing twice is harmless)."""
        if _sinks.metrics is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._waiting.close()
        _sinks.metrics = None


def start(store: Path, host: str, port: int) -> MetricsEndpoint:
    """Turn the merchant's metrics on and serve them on ``host``:``port`` (0: a port the
    OS picks); the waiting requests are read from ``store`` at each scrape.

    ``ConfigError`` when they cannot be: the port taken, metrics already on in this
    process, or PROMETHEUS_MULTIPROC_DIR set (prometheus_client would write this process's
    samples into that directory, where a bank's page would add them to its own).
    """
    if _sinks.metrics is not None:
        raise ConfigError("metrics are already on in this process (one merchant serves each)")
    if os.environ.get(MULTIPROC_ENV):
        raise ConfigError(f"{MULTIPROC_ENV} is set: unset it for the merchant to serve metrics")
    from prometheus_client import CollectorRegistry  # noqa: PLC0415 - above

    registry = CollectorRegistry()
    metrics = _Metrics()
    waiting = WaitingRequests(store)
    try:
        registry.register(_Page(metrics, _WaitingCollector(waiting)))
        server, thread = serve_page(registry, host, port)
    except OSError as exc:
        waiting.close()
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
    _sinks.metrics = metrics
    log.info("merchant metrics on %s port %d", host, server.server_port)
    return MetricsEndpoint(server, thread, waiting)


def enabled() -> bool:
    """Whether this process records metrics."""
    return _sinks.metrics is not None


# --- the serving path (every function is a no-op while metrics are off) ----------------


def served(
    method: str, handle: Callable[[Any, grpc.ServicerContext], Any]
) -> Callable[[Any, grpc.ServicerContext], Any]:
    """``handle`` (the Merchant service's ``method``), counted and timed."""

    def counted(request: Any, context: grpc.ServicerContext) -> Any:
        m = _sinks.metrics
        if m is None:
            return handle(request, context)
        name = allowed("method", method)
        started = time.perf_counter()
        m.in_flight.labels(name).inc()
        status: grpc.StatusCode | None = grpc.StatusCode.UNKNOWN  # if the method raises
        completions: list[str] = []
        _answering.completions = completions
        try:
            response = handle(request, context)
            status = None
            return response
        finally:
            _answering.completions = None
            # code() is what abort() or set_code() chose (grpc-stubs lacks it; grpcio has
            # it); gRPC sets none when the wallet's deadline passes or it cancels, so a call
            # answered after that is counted with the status the wallet got.
            code = context.code() or given_up(context) or status  # type: ignore[attr-defined]
            if code is None or code is grpc.StatusCode.OK:
                for completion in completions:
                    m.purchases.labels(completion).inc()
            m.in_flight.labels(name).dec()
            m.requests.labels(name).inc()
            m.duration.labels(name).observe(time.perf_counter() - started)
            if code is not None and code is not grpc.StatusCode.OK:
                m.errors.labels(name, code.name).inc()

    return counted


def rpc_shed(service: str, method: str) -> None:
    """A call of ``service``'s ``method`` was shed (``setcore.admission``)."""
    m = _sinks.metrics
    if m is not None:
        name = method if service == _SERVICE else OTHER
        m.shed.labels(allowed("method", name)).inc()


def refused(method: str, code: int) -> None:
    """The Merchant service's ``method`` was answered with a signed SET Error of ``code``."""
    m = _sinks.metrics
    if m is not None:
        name = ErrorCode.Name(code) if code in ErrorCode.values() else OTHER
        m.errors.labels(allowed("method", method), name).inc()


def purchase_diverted() -> None:  # a Purchase found no place to wait on the gateway
    if _sinks.metrics is not None:
        _sinks.metrics.diverted.inc()


def purchase_answered(completion: int) -> None:
    """A PRes reporting ``completion`` (a ``CompletionCode``) is sent: counted at once, or,
    inside a served call, once it ends delivered (``served``)."""
    m = _sinks.metrics
    if m is not None:
        known = completion in purchase_pb2.CompletionCode.values()
        name = allowed(
            "completion", purchase_pb2.CompletionCode.Name(completion) if known else OTHER
        )
        pending: list[str] | None = getattr(_answering, "completions", None)
        if pending is None:
            m.purchases.labels(name).inc()
        else:
            pending.append(name)


def gateway_call(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorates a ``GatewayClient`` method that sends a ``kind`` of request: each call
    counted by its result, and timed."""

    def decorate(call: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(call)
        def metered(*args: P.args, **kwargs: P.kwargs) -> R:
            m = _sinks.metrics
            if m is None:
                return call(*args, **kwargs)
            started = time.perf_counter()
            try:
                result = call(*args, **kwargs)
            except Exception as exc:
                _record_call(m, kind, _failure(kind, exc), started)
                raise
            _record_call(m, kind, answered(result), started)
            return result

        return metered

    return decorate


def _record_call(m: _Metrics, kind: str, result: str, started: float) -> None:
    kind = allowed("kind", kind)
    m.gateway_calls.labels(kind, allowed("result", result)).inc()
    m.gateway_duration.labels(kind).observe(time.perf_counter() - started)


def _failure(kind: str, exc: Exception) -> str:
    """The result of a ``kind`` of call that raised ``exc`` instead of returning a verified
    answer."""
    if isinstance(exc, TransportError):
        return exc.status
    if isinstance(exc, PeerError):
        return exc.code_name
    if isinstance(exc, RevocationUnavailable):
        return REVOCATION_UNAVAILABLE
    if isinstance(exc, ProtocolError):
        return UNVERIFIED
    # A verified PCertRes that serves no certificate for the brand says no to what was
    # asked. The same error reaches the calls that needed those certificates (an
    # authorization's answer checked against the gateway they name): for those it is the
    # merchant's setup that fails, and the gateway's answer is not a refusal.
    if isinstance(exc, ConfigError) and kind == GATEWAY_CERTIFICATES:
        return DECLINED
    return MERCHANT_FAILURE
