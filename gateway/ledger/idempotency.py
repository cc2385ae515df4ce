"""RRPID idempotency: one decision per RRPID, and its exact response bytes kept with it.

Every money operation is decided once per RRPID (``decide_once``) and answered once
(``store_answer``). The response is signed by the caller, and signing never happens
inside a write transaction: a token that stalls for seconds must not hold the ledger's
single writer (SQLite) or a card's row locks (PostgreSQL) while it does. So:

1. ``decide_once``, in a write transaction:
   - RRPID seen with the same request digest: return what it has, change nothing: the
     stored bytes, or ``Unanswered`` if its answer was never stored;
   - RRPID seen with another digest: raise RrpidReused, change nothing;
   - RRPID fenced for these bytes (refused as too old, ``fence``): raise RequestFenced,
     change nothing;
   - RRPID new: decide. If the caller brought the answer already built for exactly this
     outcome (``PrebuiltApproval``: the usual approval, signed in parallel before the
     request reached the ledger), store those bytes under the RRPID and return them.
     Otherwise keep the outcome under the RRPID, with no response yet, and return
     ``Unanswered``.
2. The caller builds the response for the outcome, outside any transaction.
3. ``store_answer``, in a second write transaction, stores those bytes under the RRPID
   in place of the outcome and returns them; if another call (a retry) stored its answer
   first, it returns that one, so every caller sends the same bytes.

A caller that fails between 1 and 3 (its signature failed, its process died) leaves the
decision committed and unanswered: a retry of the same request finds it in step 1 and
answers it, and never decides again. The state change and the decision are atomic; only
the response bytes follow. Nothing is returned before it is durably stored, so the
response bytes a merchant receives are the bytes a retry gets: the signed message (an
AuthRes, CapRes, ...), which the gateway's reply carries as its result field
(``AuthorizeResponse.auth_res``, ...). The reply's plaintext routing header is not
stored: each reply gets one of its own (``gateway.servicer.reply_header``: the request's
ids, this reply's date), so two replies to one request may differ in their
``header.date_unix_ms``. Nor is a SET Error stored: each try of a refused request is
refused, and signed, afresh. To check idempotency, compare the result field, not whole
replies. One refusal leaves a row, though not its Error: the fence below.

Two concurrent requests with one RRPID cannot both decide: the RRPID is the primary key
of ``requests``, so the later insert fails, rolls back (with what it changed) and,
retried by the store, finds the winner's record.

A request is decided within ``DECIDED_WITHIN_MS`` of the moment the gateway checked it
(``checked_at_ms``: its date, its certificates, a PI's order date), or never. Whatever
held it between (a writer's queue full or stalled, a caller that gave up on its commit
while its job stayed queued, the ledger process's socket and queue, a card's row lock or
a pooled connection on PostgreSQL, retries of a serialization failure), ``decide_once``
reads the clock as it is about to finish, once the decision's row is written, and if the
check is older than the bound raises StoreUnavailable: the operation rolls back, nothing
of it is kept (the RRPID stays new), and the gateway answers UNAVAILABLE, on which the
merchant sends the same bytes again, to be checked afresh. A stored answer (or a
decision awaiting one) is returned whatever the moment, as before: only a new decision
is bounded. Every store applies the operation the same way, so the bound holds for
SQLite in this process, for the ledger process and for PostgreSQL alike; the commit that
carries the decision follows it at once (SQLite: the rest of the group's 2 ms window and
one fsync; PostgreSQL: the COMMIT). How long that commit takes nothing here bounds: a
stalled fsync, or a COMMIT waiting for a synchronous standby that is gone, lands the
decision later, and a read meanwhile finds nothing: which is why a refusal as too old
is not a read but a fence (below).

A fence (``fence``) makes the gateway's refusal of a request as too old (MESSAGE_TOO_OLD:
its date, or its PI's order date) final. The merchant takes that refusal as proof that
no sending of those bytes was or will be decided, and builds the request afresh under a
new RRPID (``clients.merchant.renewal``); an earlier sending, let in while its date was
fresh and decided, but committed only after the refusal (a stalled fsync, a COMMIT
waiting for a synchronous standby), would otherwise leave a hold on the card beside the
request built afresh. So the refusal is a write transaction under the RRPID, through the
same store and retries as ``decide_once``: the RRPID's recorded answer if it has one
(returned, and the request answered with it, as by ``lookup``), else a fence row under
it, in ``requests`` itself. The primary key makes a fence and a decision exclude each
other: whichever commits first wins, and the other finds it. On SQLite both go through
the one writer, in order, and a fence's commit follows the decision's. On PostgreSQL a
fence's INSERT waits for a concurrent, uncommitted decision's, fails on the key once
that commits, and its retry returns the decision; a decision's INSERT after a fence
fails alike, and its retry meets the fence. A decision meeting a fence of the same
bytes raises RequestFenced (answered MESSAGE_TOO_OLD, nothing written); of other bytes,
RrpidReused, as any row does. A fence is written only after the requester's signature
verified (the gateway checks dates on signed data only), so no peer but the merchant
can fence an RRPID, and only with bytes it signed.

A fence's row has an empty ``response`` and no ``outcome``, a pair no decision ever
writes (a decision awaiting its answer has an outcome; a stored answer is never empty,
``store_answer`` and the prebuilt approval's check refuse one): no schema change, and
``store_answer`` (``outcome IS NOT NULL``) never overwrites it. Retention prunes it as
an answered row (``retention``): by then no sending of its bytes can be decided.

A decision whose answer can never be built (its merchant gone, a certificate it names
revoked since, the key it is sealed to lost) can be settled by hand (``unanswered``,
``setpay bank settle-unanswered``, schema version 8): its row keeps the empty
``response`` and the ``outcome``, for audit, and gains ``settled_at_ms`` and
``settled_reason``. The settling moves no money: a capture or credit stands as
posted, and an authorization's hold stays until it lapses at its expiry, when the
sweeper gives the money back to the card (the merchant, never answered, holds no capture
token and can never capture it); the operator settles with the merchant out of band.
Such a row is never answered: ``lookup`` returns it as ``SettledByHand`` (an
``Unanswered`` the gateway must not build: ``gateway.servicer`` answers the resend
UNAVAILABLE, saying so), ``decide_once`` raises DecisionSettled, a StoreUnavailable, for
it (a resend whose checks still pass is answered UNAVAILABLE too, never decided or
answered, and the gateway's log says why), and
``store_answer`` neither overwrites it nor returns it (a retry building its answer as
the operator settled it: the settling, or the answer, commits first, and the other finds
the row taken). The fresh request's path reads no more than before: the same row, by
its key, found absent.

The merchant still builds a request refused as too old afresh only once no earlier
sending of it could still be decided by a gateway that does not fence (an older
release): its margin is this bound, 10 s for that commit, and the 30 s it lets the two
clocks differ. The clock read is the one the gateway dated its check with
(``setcore.freshness.now_ms``), not the ledger's own (``Ledger``'s, which dates holds
and may be a test's), taken on the host that applies the operation: the gateway's for
SQLite in its process and for PostgreSQL, the ledger process's, on the same machine, for
the ledger service. A caller that gives no moment (None: the ledger's own tooling and
tests) is not bounded. The bound is long beside any healthy latency (milliseconds) and
shorter than the merchant's 30 s deadline for an authorization, so a request it stops is
one the merchant may still be waiting for, and hears UNAVAILABLE rather than nothing.

An exception from ``decide`` rolls back the whole operation, so nothing is stored and a
retry decides afresh. PostgreSQL may retry a transaction after a serialization failure,
so ``decide`` may run more than once for one request; only the committed attempt counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.ledger import outcome_codec
from gateway.ledger.errors import (
    DecisionSettled,
    LedgerError,
    RequestFenced,
    RrpidReused,
    StoreError,
    StoreUnavailable,
)
from gateway.ledger.outcomes import Outcome, PrebuiltApproval, Unanswered
from gateway.ledger.store import Transaction
from setcore import freshness

# How long after the gateway checked a request the ledger may still decide it (the module
# docstring): ``clients.merchant.renewal.LEDGER_DECIDES_WITHIN_MS`` relies on it.
DECIDED_WITHIN_MS = 20_000

Recorded = bytes | Unanswered
"""What an RRPID has once decided: its stored response, or a decision awaiting one (which
may be ``SettledByHand``: never to be answered)."""


@dataclass(frozen=True)
class SettledByHand(Unanswered):
    """A decision awaiting its answer that an operator settled by hand (the module
    docstring), at ``settled_at_ms`` for ``reason``: it is never answered. An
    ``Unanswered`` still (its outcome kept, and the type every caller of ``lookup``
    already takes), so the caller that builds answers must check for it first."""

    settled_at_ms: int
    reason: str


def settled_refusal(rrpid: bytes, settled: SettledByHand) -> str:
    """What the gateway and the ledger say of a request whose decision was settled by
    hand: never its reason (an operator's text), the RRPID by its first bytes only."""
    when = datetime.fromtimestamp(settled.settled_at_ms / 1000, tz=UTC)
    return (
        f"request {rrpid.hex()[:8]} was decided, its answer never stored, and an operator"
        f" settled it by hand at {when:%Y-%m-%d %H:%M:%S} UTC (setpay bank"
        " show-unanswered): it is never answered; the merchant and the bank settle it out"
        " of band"
    )


def decide_once(
    tx: Transaction,
    *,
    rrpid: bytes,
    request_digest: bytes,
    now_ms: int,
    checked_at_ms: int | None,
    decide: Callable[[Transaction], Outcome],
    prebuilt: PrebuiltApproval | None,
) -> Recorded:
    """Decide once per RRPID: the response bytes if they are known, else ``Unanswered``.

    ``now_ms`` is the decision's time as the caller stamped it (before its operation
    waited for the store); ``checked_at_ms`` the moment the caller checked the request
    (None: unknown), kept with it for an answer built later. StoreUnavailable, nothing
    written, when a new decision comes more than ``DECIDED_WITHIN_MS`` after that check;
    DecisionSettled, nothing written, when the RRPID's decision was settled by hand.
    """
    recorded = _not_settled(rrpid, lookup(tx, rrpid, request_digest))
    if recorded is not None:
        return recorded
    try:
        outcome = decide(tx)
    except LedgerError:
        # Under READ COMMITTED (PostgreSQL) each statement sees what was committed before
        # it began: a concurrent request with this RRPID may have committed after our first
        # look, and its effects (say, the PI it used) are what make ``decide`` refuse. Its
        # record is the answer to this retry too.
        recorded = _not_settled(rrpid, lookup(tx, rrpid, request_digest))
        if recorded is not None:
            return recorded
        raise
    if prebuilt is not None and prebuilt.answers(outcome):
        _insert(tx, rrpid, request_digest, prebuilt.response, None, now_ms, checked_at_ms)
        _decided_in_time(checked_at_ms)
        return prebuilt.response
    encoded = outcome_codec.dumps(outcome)
    _insert(tx, rrpid, request_digest, _NO_RESPONSE_YET, encoded, now_ms, checked_at_ms)
    _decided_in_time(checked_at_ms)
    return _unanswered(outcome, now_ms, checked_at_ms)


def _not_settled(rrpid: bytes, recorded: Recorded | None) -> Recorded | None:
    """``recorded``, unless it is a decision settled by hand: DecisionSettled then (the
    request is answered UNAVAILABLE, its caller never builds an answer for it)."""
    if isinstance(recorded, SettledByHand):
        raise DecisionSettled(settled_refusal(rrpid, recorded))
    return recorded


def _decided_in_time(checked_at_ms: int | None) -> None:
    """StoreUnavailable, undoing the operation, when the request was checked more than
    ``DECIDED_WITHIN_MS`` ago (the module docstring). Read last, once every statement of
    the decision has run (a lock waited for included): only its commit follows."""
    if checked_at_ms is not None and freshness.now_ms() - checked_at_ms > DECIDED_WITHIN_MS:
        raise StoreUnavailable(
            f"the request was checked more than {DECIDED_WITHIN_MS // 1000} s before the"
            " ledger could decide it: not decided, to be checked afresh"
        )


def store_answer(tx: Transaction, *, rrpid: bytes, request_digest: bytes, response: bytes) -> bytes:
    """Store ``response`` as the answer to the RRPID's unanswered decision and return it;
    return the stored answer instead if another call stored one first. A fence is never
    answered (RequestFenced): it has no outcome for the statement below to find; nor is
    a decision settled by hand (DecisionSettled)."""
    if not isinstance(response, bytes) or not response:
        raise TypeError("a response must be non-empty bytes")
    # One statement that both checks and answers: under READ COMMITTED (PostgreSQL) it
    # waits for a concurrent answer to commit and then finds nothing left to answer.
    answered = tx.run(
        "UPDATE requests SET response = ?, outcome = NULL WHERE rrpid = ?"
        " AND request_digest = ? AND outcome IS NOT NULL AND settled_at_ms IS NULL",
        response,
        rrpid,
        request_digest,
    )
    if answered:
        return response
    stored = _not_settled(rrpid, lookup(tx, rrpid, request_digest))
    if not isinstance(stored, bytes):
        raise StoreError("there is no decision under this RRPID to answer")
    return stored


def fence(tx: Transaction, *, rrpid: bytes, request_digest: bytes, now_ms: int) -> Recorded | None:
    """Make a refusal of these request bytes as too old final (the module docstring): what
    the RRPID has recorded for them, if anything (stored bytes or an unanswered decision,
    to answer with); else None, the RRPID fenced (now, or by an earlier refusal), so that
    no decision of it is ever written. RrpidReused if the RRPID holds another request's
    row (a decision or a fence)."""
    try:
        recorded = lookup(tx, rrpid, request_digest)
    except RequestFenced:
        return None
    if recorded is not None:
        return recorded
    _insert(tx, rrpid, request_digest, _FENCED, None, now_ms, None)
    return None


def lookup(tx: Transaction, rrpid: bytes, request_digest: bytes) -> Recorded | None:
    """What the RRPID has (stored bytes or an unanswered decision, ``SettledByHand`` if
    an operator settled it), None if it is new; RrpidReused if it was used for another
    request, RequestFenced if these bytes were refused as too old (``fence``)."""
    found = tx.one(
        "SELECT request_digest, response, outcome, created_at_ms, checked_at_ms,"
        " settled_at_ms, settled_reason FROM requests WHERE rrpid = ?",
        rrpid,
    )
    if found is None:
        return None
    if bytes(found["request_digest"]) != request_digest:
        raise RrpidReused("this RRPID was already used for a different request")
    if found["outcome"] is None:
        response = bytes(found["response"])
        if response == _FENCED:
            raise RequestFenced(
                "these request bytes were refused as too old: they are never decided"
            )
        return response
    checked_at_ms = found["checked_at_ms"]
    unanswered = _unanswered(
        outcome_codec.loads(str(found["outcome"])),
        int(found["created_at_ms"]),
        None if checked_at_ms is None else int(checked_at_ms),
    )
    if found["settled_at_ms"] is None:
        return unanswered
    return SettledByHand(
        outcome=unanswered.outcome,
        decided_at_ms=unanswered.decided_at_ms,
        checked_at_ms=unanswered.checked_at_ms,
        settled_at_ms=int(found["settled_at_ms"]),
        reason=str(found["settled_reason"] or ""),
    )


def _unanswered(outcome: Outcome, decided_at_ms: int, checked_at_ms: int | None) -> Unanswered:
    """A decision awaiting its answer; where the check's moment was not recorded (a caller
    that gave none, a row older than schema version 3), the decision's time stands in."""
    checked = decided_at_ms if checked_at_ms is None else checked_at_ms
    return Unanswered(outcome=outcome, decided_at_ms=decided_at_ms, checked_at_ms=checked)


def stored_response(tx: Transaction, rrpid: bytes, request_digest: bytes) -> bytes | None:
    """The response stored under ``rrpid``, None if there is none (yet); RrpidReused on
    mismatch, RequestFenced if these bytes were fenced (``lookup``)."""
    recorded = lookup(tx, rrpid, request_digest)
    return recorded if isinstance(recorded, bytes) else None


# A decision's row before its response is stored: the column is NOT NULL since version 1,
# and a real response is never empty.
_NO_RESPONSE_YET = b""
# A fence's row (``fence``): the same empty response, but no outcome, a pair no decision
# writes.
_FENCED = b""


def _insert(
    tx: Transaction,
    rrpid: bytes,
    digest: bytes,
    response: bytes,
    outcome: str | None,
    now_ms: int,
    checked_at_ms: int | None,
) -> None:
    tx.run(
        "INSERT INTO requests"
        " (rrpid, request_digest, response, outcome, created_at_ms, checked_at_ms)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rrpid,
        digest,
        response,
        outcome,
        now_ms,
        checked_at_ms,
    )
