"""The label values of the merchant's metrics: fixed sets, and the guard that keeps them so.

A label value is never taken from a request or an answer as it is: ``allowed`` looks it
up in its set (``LABEL_VALUES``) and anything else is counted as ``other``. So the page
never carries a PAN (the merchant has none), an amount, an XID, a merchant id, a peer's
text or key material, and there are never more series than the sets allow. The sets come
from the protos and the enums they name, and change with them.

The gateway calls are named by the kind of request the merchant sends (``KINDS``); the
same names count the requests stored and waiting for an answer (``WAITING_KINDS``, the
kinds ``clients.merchant.store.WaitingRequests`` reads). A verified answer counts as
approved or declined by its result codes (``answered``); one whose code this build does
not define (a gateway of a later release) as ``other``, never by its number: the merchant
reads it as neither (``clients.merchant.outcome``), and each number would be a series.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from clients.merchant.records import OperationKind
from setcore.auth_reversal import AuthRevResult
from setcore.authorization import AuthResult
from setcore.cap_rev_or_cred import CapRevOrCredResult
from setcore.capture import CaptureResult
from setcore.enum_names import is_known
from setcore.errors import ErrorCode
from setcore.gateway_admin import BatchAdminResult
from setpay.v1 import authorization_pb2, capture_pb2, gateway_admin_pb2, purchase_pb2, services_pb2

OTHER = "other"

# The Merchant service's methods: the only calls the merchant's own code handles (gRPC's
# health service beside it is not counted).
MERCHANT_METHODS = tuple(
    m.name for m in services_pb2.DESCRIPTOR.services_by_name["MerchantService"].methods
)
AUTHORIZATION = "authorization"
BATCH = "batch"
GATEWAY_CERTIFICATES = "gateway-certificates"
# Requests stored before they are sent and sent until the gateway's answer is final: an
# order's AuthReq, a settlement operation (by its kind, as the store names it), a batch
# change. ``GATEWAY_CERTIFICATES`` (PCertReq) is asked, never stored.
WAITING_KINDS = (AUTHORIZATION, *(k.value for k in OperationKind), BATCH)
KINDS = (*WAITING_KINDS, GATEWAY_CERTIFICATES)

# A gateway call's result, when it is no SET Error code nor gRPC status: the answer
# verified and said yes or no; it came and did not verify; it could not be checked for
# want of current revocation data; the merchant's own key backend or store failed on it.
APPROVED = "approved"
DECLINED = "declined"
UNVERIFIED = "unverified"
REVOCATION_UNAVAILABLE = "revocation_unavailable"
MERCHANT_FAILURE = "merchant_failure"
# ``clients.transport``'s own names for a call that ended with no gRPC status of the
# peer's: its deadline spent between attempts, an answer that did not parse.
TRANSPORT_STATUSES = ("DEADLINE_EXCEEDED", "UNPARSEABLE_RESPONSE")

_ERROR_CODES = frozenset(ErrorCode.keys())
_STATUSES = frozenset(c.name for c in grpc.StatusCode)

LABEL_VALUES: Mapping[str, frozenset[str]] = {
    name: frozenset(values) | {OTHER}
    for name, values in {
        "method": set(MERCHANT_METHODS),
        "code": _ERROR_CODES | _STATUSES,
        "kind": set(KINDS),
        "result": {APPROVED, DECLINED, UNVERIFIED, REVOCATION_UNAVAILABLE, MERCHANT_FAILURE}
        | _ERROR_CODES
        | _STATUSES
        | set(TRANSPORT_STATUSES),
        "completion": set(purchase_pb2.CompletionCode.keys()),
    }.items()
}
"""Every label name used and the values it may take (``other`` for anything unexpected)."""

# --- the combinations counters start at zero with -------------------------------------

GATEWAY_CALL_LABELS: tuple[tuple[str, str], ...] = tuple(
    (kind, result) for kind in KINDS for result in (APPROVED, DECLINED)
)
"""(kind, result) of every kind's answers that verified: the two results each kind sees
in a healthy merchant's life, so that ``increase()`` sees the first of each."""

# Every code but UNSPECIFIED (0).
COMPLETIONS: tuple[str, ...] = tuple(n for n, i in purchase_pb2.CompletionCode.items() if i)
"""The completions a PRes may report."""


def allowed(label: str, value: str) -> str:
    """``value`` if it is in ``label``'s set, else ``other``."""
    return value if value in LABEL_VALUES[label] else OTHER


def answered(result: object) -> str:
    """A verified answer's ``result`` label: approved when it says yes to what was asked
    (every item of it), ``other`` when a code of it is one this build does not define,
    declined otherwise; approved for the gateway's certificates (a verified PCertRes
    that names them)."""
    a, c, g = authorization_pb2, capture_pb2, gateway_admin_pb2
    codes: list[tuple[EnumTypeWrapper, int, int]] = []  # (enum, code, its success value)
    if isinstance(result, AuthResult):
        codes = [(a.AuthCode, result.auth_code, a.AUTH_CODE_APPROVED)]
    elif isinstance(result, AuthRevResult):
        codes = [(a.AuthRevCode, result.auth_rev_code, a.AUTH_REV_CODE_APPROVED)]
    elif isinstance(result, CaptureResult):
        codes = [(a.CapCode, i.cap_res_payload.cap_code, a.CAP_CODE_SUCCESS) for i in result.items]
    elif isinstance(result, CapRevOrCredResult):
        codes = [(c.CapRevOrCredCode, i.code, c.CAP_REV_OR_CRED_CODE_SUCCESS) for i in result.items]
    elif isinstance(result, BatchAdminResult):
        codes = [(g.BatchAdminStatus, result.status, g.BATCH_ADMIN_STATUS_SUCCESS)]
    if not all(is_known(enum, code) for enum, code, _ in codes):
        return OTHER
    return APPROVED if all(code == yes for _, code, yes in codes) else DECLINED
