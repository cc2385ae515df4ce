"""The label values of the bank's metrics: fixed sets, and the guard that keeps them fixed.

A label value is never taken from a request as it is: ``allowed`` looks it up in its set
(``LABEL_VALUES``) and anything else is counted as ``other``. So the page never carries a
PAN, an amount, an identifier or a peer's text, and there are never more series than the
sets allow. The sets come from the protos and the enums they name, and change with them.

The combinations a worker's counters start at zero with (``gateway.metrics``) are drawn
from the same sets: ``BANK_RPCS``, ``AUTHORIZATION_LABELS``, ``KEY_ERROR_LABELS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gateway.ledger import Decline
from gateway.outcomes import resp_reason_for
from hsm.base import KemAlgorithm, SignatureAlgorithm
from hsm.errors import KeyBackendError
from setcore.errors import ErrorCode
from setpay.v1 import authorization_pb2, services_pb2

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

# Worker index label values: one per possible worker (gateway.config.MAX_WORKERS).
MAX_WORKER_LABELS = 64
OTHER = "other"

# ISO 4217 numeric -> alphabetic, for the amount histogram's label: a small fixed set,
# because the currency comes from the request; any other is counted as "other".
CURRENCIES: Mapping[int, str] = {
    36: "AUD", 124: "CAD", 156: "CNY", 392: "JPY", 752: "SEK", 756: "CHF", 826: "GBP",
    840: "USD", 978: "EUR",
}  # fmt: skip

KEY_OPS = ("sign", "decapsulate", "login", "relogin")
REPLAY_KINDS = ("pi_reused", "rrpid_reused")
CACHE_RESULTS = ("hit", "miss")
# The revocation watcher's two steps (``gateway.ca.watcher.WatcherCounters``).
REFRESH_STEPS = ("publish", "install")
# Why a sweep of ca.db failed, each with the field of
# ``gateway.ca.authority.HousekeepingCounters`` that counts it.
HOUSEKEEPING_CAUSES: Mapping[str, str] = {"busy": "busy", "outage": "outages", "bug": "bugs"}


def _key_error_kinds() -> tuple[str, ...]:
    kinds: set[str] = set()
    pending: list[type[KeyBackendError]] = [KeyBackendError]
    while pending:
        cls = pending.pop()
        kinds.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return tuple(sorted(kinds))


# The bank's own services, whose methods its code handles.
_BANK_SERVICES = tuple(
    services_pb2.DESCRIPTOR.services_by_name[name]
    for name in ("PaymentGatewayService", "CertificateAuthorityService")
)
# Every service of the protos and the two gRPC ones every server carries beside the bank's:
# a call to those is never handled by the bank's code, but it can be shed (``rpc_shed``).
_SERVICES = (
    *services_pb2.DESCRIPTOR.services_by_name.values(),
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
)
_ERROR_CODES = tuple(name for name, number in ErrorCode.items() if number)  # not UNSPECIFIED
_KEY_ERRORS = _key_error_kinds()

LABEL_VALUES: Mapping[str, frozenset[str]] = {
    name: frozenset(values) | {OTHER}
    for name, values in {
        "service": {s.full_name for s in _SERVICES},
        "method": {m.name for s in _SERVICES for m in s.methods},
        "code": {c.name for c in grpc.StatusCode} | set(ErrorCode.keys()),
        "outcome": {"approved", "declined", "error"},
        "reason": {"none"} | set(authorization_pb2.RespReason.keys()) | set(ErrorCode.keys()),
        "currency": set(CURRENCIES.values()),
        "kind": set(REPLAY_KINDS),
        "result": set(CACHE_RESULTS),
        "op": set(KEY_OPS),
        "algorithm": {a.value for a in (*SignatureAlgorithm, *KemAlgorithm)} | {"none"},
        "error": set(_KEY_ERRORS),
        "worker": {str(i) for i in range(MAX_WORKER_LABELS)},
        "step": set(REFRESH_STEPS),
        "cause": set(HOUSEKEEPING_CAUSES),
    }.items()
}
"""Every label name used and the values it may take (``other`` for anything unexpected)."""

# --- the combinations counters start at zero with -------------------------------------

BANK_RPCS: tuple[tuple[str, str], ...] = tuple(
    (s.full_name, m.name) for s in _BANK_SERVICES for m in s.methods
)
"""(service, method) of every method the bank's code handles (some fifteen)."""

AUTHORIZATION_LABELS: tuple[tuple[str, str], ...] = (
    ("approved", "none"),
    *(
        ("declined", authorization_pb2.RespReason.Name(reason))
        for reason in sorted({resp_reason_for(d) for d in Decline})
    ),
    *(("error", name) for name in _ERROR_CODES),
)
"""(outcome, reason) an authorization can be counted with: a sum of the outcomes' reasons
(some 40), not a product."""

KEY_ERROR_LABELS: tuple[tuple[str, str], ...] = tuple(
    (op, error) for op in KEY_OPS for error in _KEY_ERRORS
)
"""(op, error class) a key-backend error can be counted with: every op by every class of
``hsm.errors`` (some fifty; the one product of two sets, both small)."""


def allowed(label: str, value: str) -> str:
    """``value`` if it is in ``label``'s set, else ``other``."""
    return value if value in LABEL_VALUES[label] else OTHER


class Children:
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
            known = tuple(allowed(n, v) for n, v in zip(self._names, values, strict=True))
            child = self._children.get(known)
            if child is None:
                child = self._metric.labels(*known)
                self._children[known] = child
        return child
