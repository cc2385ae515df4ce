"""Retries and RRPIDs: the same request gets the same answer, another request is refused.

RRPID is the idempotency key (DESIGN.md 5.3). An answer is stored with a digest of the
exact request bytes it answers, in the same transaction as the state it reports; a
request under a stored RRPID gets those bytes back if it is the same request, and
RRPID_REUSED otherwise. Answers are purged after ``CaPolicy.response_retention_ms``,
certified and pended requests are kept for good: a request under the RRPID of one whose
answer is gone is RRPID_REUSED too (a retry of that very request is past its date by
then; its requester asks with CertInq). A cardholder's request refused by the issuer is
kept as its answer only, purged with the others: a retry of it after that is refused
MESSAGE_TOO_OLD by its date, and a CertInq about it finds no request (UNKNOWN_LID).
The answers that open or fill a session (``SESSION_KINDS``) are purged once a session's
lifetime has passed: a retry after that opens a new session (CardCInit, Me-AqCInit) or
finds its session gone (RegForm, UNKNOWN_LID), as it would with the answer kept.

Plaintext requests (CardCInit, Me-AqCInit) are digested over a deterministic
serialization without their header (whose date changes between retries): that digest
only matches retries, it never checks a signature.
"""

from __future__ import annotations

import hmac

from gateway.ca.store import StoreTransaction
from setcore.encoding import digest
from setcore.errors import ErrorCode, fail

_DIGEST_TYPE = "setpay.v1.ca.request"

# The kinds of request an answer is stored under (``responses.kind``).
KIND_CARD_C_INIT = "card-c-init"
KIND_REG_FORM = "reg-form"
KIND_ME_AQ_C_INIT = "me-aq-c-init"
KIND_CERT = "cert"
KIND_CERT_INQ = "cert-inq"
# Answers inside a session, which anyone may ask for without a key or a card: kept only
# as long as a session lasts (``CaPolicy.session_lifetime_ms``), not for a week, so
# anonymous requests cannot fill ca.db; a retry after that finds the session gone anyway.
SESSION_KINDS = (KIND_CARD_C_INIT, KIND_REG_FORM, KIND_ME_AQ_C_INIT)


def request_digest(kind: str, request_bytes: bytes) -> bytes:
    """The digest a stored answer is matched on (the request kind is part of it)."""
    return digest(f"{_DIGEST_TYPE}.{kind}", request_bytes)


def replayed(tx: StoreTransaction, rrpid: bytes, kind: str, request: bytes) -> bytes | None:
    """The stored answer for a retry of this request; RRPID_REUSED for another request,
    or under the RRPID of a certified or pended request whose answer was purged."""
    stored = tx.response(rrpid)
    if stored is None:
        if tx.request_decided(rrpid):
            raise fail(ErrorCode.ERROR_CODE_RRPID_REUSED, "RRPID of a decided request")
        return None
    if stored.kind != kind or not hmac.compare_digest(stored.request_digest, request):
        raise fail(ErrorCode.ERROR_CODE_RRPID_REUSED, "RRPID already answered another request")
    return stored.response
