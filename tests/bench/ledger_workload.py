"""What the ledger's writer does for one authorization, for the writer-only benchmarks.

``ledger_pages.py`` and ``ledger_growth.py`` drive one connection opened as the store opens
its own (WAL, ``synchronous=FULL``) and apply authorizations the way the writer thread
applies a group's operations: each inside its own savepoint, through the ledger's own
``run_once`` and ``authorize`` rules, with a stored response of an ec AuthRes's size.
"""

from __future__ import annotations

import os
import sqlite3
import time

from gateway.ledger import authorization, idempotency
from gateway.ledger.outcomes import PrebuiltApproval
from gateway.ledger.sqlite import SqliteTransaction

EUR = 978
MERCHANT = "bench-merchant"
EXPIRY = "203012"
# About the size of an ec AuthRes, the bytes stored under each RRPID.
RESPONSE_BYTES = 1500
HOLD_LIFETIME_MS = 3_600_000


def authorize_in_savepoint(
    conn: sqlite3.Connection,
    tx: SqliteTransaction,
    *,
    pan_index: bytes,
    hold_id: str,
    response: bytes,
) -> None:
    """Apply one approved authorization (fresh RRPID and XID) inside its own savepoint,
    storing ``response`` as its answer."""
    rrpid = os.urandom(32)
    now = time.time_ns() // 1_000_000
    conn.execute("SAVEPOINT op")
    idempotency.decide_once(
        tx,
        rrpid=rrpid,
        request_digest=rrpid,
        now_ms=now,
        checked_at_ms=now,
        prebuilt=PrebuiltApproval(hold_id, 100, EUR, response),
        decide=lambda t: authorization.authorize(
            t,
            pan_index=pan_index,
            pan_expiry=EXPIRY,
            amount=100,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=os.urandom(32),
            pi_digest=rrpid,
            rrpid=rrpid,
            hold_id=hold_id,
            expires_at_ms=now + HOLD_LIFETIME_MS,
            capture_now=False,
            now_ms=now,
        ),
    )
    conn.execute("RELEASE op")
