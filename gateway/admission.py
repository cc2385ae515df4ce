"""The bank's load shedding: ``setcore.admission``'s, its refusals counted as
``setpay_rpc_shed_total`` (``metrics.rpc_shed``).

The merchant sheds the same way (``clients.merchant.servicer``), so the mechanism and its
limits live in setcore, which both may import; this module binds it to the bank's metrics
and keeps the names the bank's server and tests use.
"""

from __future__ import annotations

from gateway import metrics
from setcore import admission as _shared
from setcore.admission import (
    HEALTH_RESERVE,
    SHED_BACKLOG,
    SHED_DETAILS,
    SHED_RETRY_SECONDS,
    InFlightPool,
    Refusal,
)

__all__ = [
    "HEALTH_RESERVE",
    "SHED_BACKLOG",
    "SHED_DETAILS",
    "SHED_RETRY_SECONDS",
    "Admission",
    "InFlightPool",
    "Refusal",
]


class Admission(_shared.Admission):
    """``setcore.admission.Admission``, each refusal counted in the bank's metrics."""

    def __init__(self, pool: InFlightPool, limit: int) -> None:
        super().__init__(pool, limit, metrics.rpc_shed)
