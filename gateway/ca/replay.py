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

Only a CertReq outcome that changed ca.db or counted against a card is stored (certified,
pended, a cardholder's REJECTED_BY_ISSUER, which used its Chall-CA): deciding it again
would not give the same answer. One refused without a change (``ANSWERED_AFRESH``: no
live session, a wrong or used Chall-CA; the CA's own refusal of its brand, form,
identity or merchant ID; a key already claimed) has no answer stored, as one refused for
its signatures or keys never had: anyone can be refused so without a card or an
account, and a week of such answers let one client fill ca.db as fast as it could send.
A resend of the same bytes is decided again against ca.db as it is then, its answer
signed (and for a cardholder sealed) afresh: other bytes, saying the same while nothing
it was refused for has changed (a used Chall-CA is never unused, an expired session
never revived, a claimed key never freed); if something has (the certificates that held
a merchant ID revoked meanwhile), it gets what it would have got had it first arrived
then. Past its date's window it is refused MESSAGE_TOO_OLD. Its RRPID stays free:
another request under it is decided, not refused RRPID_REUSED, as nothing was decided
under it.

Plaintext requests (CardCInit, Me-AqCInit) are digested over a deterministic
serialization without their header (whose date changes between retries): that digest
only matches retries, it never checks a signature.
"""

from __future__ import annotations

import hmac

from gateway.ca.store import StoreTransaction
from setcore.encoding import digest
from setcore.errors import ErrorCode, fail
from setpay.v1 import registration_pb2

_DIGEST_TYPE = "setpay.v1.ca.request"

# The kinds of request an answer is stored under (``responses.kind``).
KIND_CARD_C_INIT = "card-c-init"
KIND_REG_FORM = "reg-form"
KIND_ME_AQ_C_INIT = "me-aq-c-init"
KIND_CERT = "cert"
KIND_CERT_INQ = "cert-inq"
# Answers inside a session, which anyone may ask for without a key or a card: kept only
# as long as a session lasts (``CaPolicy.session_lifetime_ms``), not for a week; a retry
# after that finds the session gone anyway. With ``ANSWERED_AFRESH`` kept nowhere, what
# anonymous requests leave in ca.db for a week is one CertRes per session they open and
# complete (its Chall-CA used: a cardholder's REJECTED_BY_ISSUER, counted against the
# card number it names), not one per request.
SESSION_KINDS = (KIND_CARD_C_INIT, KIND_REG_FORM, KIND_ME_AQ_C_INIT)
# CertReq refusals that change nothing in ca.db, whose answers are not stored (the module
# docstring says what a resend gets): the session and Chall-CA, the CA's own refusal
# (REJECTED_BY_AGENT), a key already claimed. Listed rather than their complement, so
# that a status added later is stored until shown to change nothing.
ANSWERED_AFRESH = frozenset(
    {
        registration_pb2.CERT_STATUS_CODE_CHALLENGE_MISMATCH,
        registration_pb2.CERT_STATUS_CODE_REJECTED_BY_AGENT,
        registration_pb2.CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED,
    }
)


def request_digest(kind: str, request_bytes: bytes) -> bytes:
    """The digest a stored answer is matched on (the request kind is part of it)."""
    return digest(f"{_DIGEST_TYPE}.{kind}", request_bytes)


def keeps_answer(status: int) -> bool:
    """Whether a CertReq decided ``status`` has its answer stored (not ``ANSWERED_AFRESH``)."""
    return status not in ANSWERED_AFRESH


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
