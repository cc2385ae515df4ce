"""RRPID idempotency: one decision per RRPID, and its exact response bytes kept with it.

Every money operation runs through ``run_once`` inside the transaction that applies it:

- RRPID seen with the same request digest: return the stored bytes, change nothing;
- RRPID seen with another digest: raise RrpidReused, change nothing;
- RRPID new: decide, let the caller's ``respond`` build the response bytes for the
  outcome, store them under the RRPID, return them. The store commits the state change
  and the bytes together, durably, before anyone sees them.

Two concurrent requests with one RRPID (a client retrying early) cannot both commit: the
RRPID is the primary key of ``requests``, so the later one fails on its insert, rolls back
(with whatever it changed) and, retried by the store, finds the winner's stored bytes.

An exception from ``decide`` or ``respond`` rolls back the whole operation, so nothing is
stored and a retry decides afresh. PostgreSQL may retry a transaction after a
serialization failure, so ``respond`` may run more than once for one request; only the
bytes of the committed attempt leave the ledger.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.ledger.errors import LedgerError, RrpidReused
from gateway.ledger.outcomes import Outcome, Responder
from gateway.ledger.store import Transaction


def run_once(
    tx: Transaction,
    *,
    rrpid: bytes,
    request_digest: bytes,
    now_ms: int,
    decide: Callable[[Transaction], Outcome],
    respond: Responder,
) -> bytes:
    """Decide and respond once per RRPID; replay the stored response afterwards."""
    stored = stored_response(tx, rrpid, request_digest)
    if stored is not None:
        return stored
    try:
        outcome = decide(tx)
    except LedgerError:
        # Under READ COMMITTED (PostgreSQL) each statement sees what was committed before
        # it began: a concurrent request with this RRPID may have committed after our first
        # look, and its effects (say, the PI it used) are what make ``decide`` refuse. Its
        # stored answer is the answer to this retry too.
        stored = stored_response(tx, rrpid, request_digest)
        if stored is not None:
            return stored
        raise
    response = respond(outcome)
    if not isinstance(response, bytes):
        raise TypeError(f"respond must return bytes, not {type(response).__name__}")
    tx.run(
        "INSERT INTO requests (rrpid, request_digest, response, created_at_ms) VALUES (?, ?, ?, ?)",
        rrpid,
        request_digest,
        response,
        now_ms,
    )
    return response


def stored_response(tx: Transaction, rrpid: bytes, request_digest: bytes) -> bytes | None:
    """The response stored under ``rrpid``, None if there is none; RrpidReused on mismatch."""
    stored = tx.one("SELECT request_digest, response FROM requests WHERE rrpid = ?", rrpid)
    if stored is None:
        return None
    if bytes(stored["request_digest"]) != request_digest:
        raise RrpidReused("this RRPID was already used for a different request")
    return bytes(stored["response"])
