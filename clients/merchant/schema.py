"""The layout of the merchant's SQLite file: its tables, their version, rows back to records.

``clients.merchant.store`` decides what is written and when; this module decides how it
is laid out on disk. The two change for different reasons: a new column touches the
schema, the column lists and the row decoders here together, and no transaction.

The schema carries a version (``PRAGMA user_version``). A file written by a newer
version is refused rather than misread; an empty file is given the current schema, an
older one the steps of ``_MIGRATIONS`` that bring it there, in one transaction. A row
holding a state or kind no setpay writes is a damaged file: ``StoreError``, naming the row.

The operations and batch changes still waiting for an answer ("sent") are few, and read
often (every metrics scrape, every resume round); the rest, each row with its request's
bytes, only grow. Partial indexes hold the waiting ones alone, for a query that says
``WHERE`` ``SENT_ONLY``.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from clients.errors import StoreError
from clients.merchant.records import (
    Authorization,
    BatchRequest,
    Money,
    Operation,
    OperationKind,
    OperationState,
    Order,
    OrderState,
    short,
)

SCHEMA_VERSION = 9


def in_state(state: OperationState) -> str:
    """The SQL term for a request row (operation or batch change) in ``state``.

    Written into the statement, not bound: SQLite uses a partial index only for a WHERE
    it can see implies the index's own, and a bound value it sees only by planning the
    statement again at every run (in a build that keeps plans stable, never).
    """
    return f"state = '{state.value}'"


SENT_ONLY = in_state(OperationState.SENT)

_SCHEMA = """
CREATE TABLE offers (
    lid_m        BLOB PRIMARY KEY,
    description  BLOB NOT NULL,
    currency     INTEGER NOT NULL,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    exp10        INTEGER NOT NULL,
    brand_id     TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    xid          BLOB
);
CREATE TABLE orders (
    xid                  BLOB PRIMARY KEY,
    lid_m                BLOB NOT NULL REFERENCES offers(lid_m),
    trans_ids            BLOB NOT NULL,
    chall_m              BLOB NOT NULL,
    state                TEXT NOT NULL,
    created_ms           INTEGER NOT NULL,
    updated_ms           INTEGER NOT NULL,
    cardholder_thumb     BLOB,
    oi_data              BLOB,
    pi                   BLOB,
    auth_rrpid           BLOB UNIQUE,
    auth_request         BLOB,
    auth_request_digest  BLOB,
    auth_code            INTEGER,
    auth_amount          INTEGER,
    approval_code        TEXT,
    auth_res             BLOB,
    cap_token            BLOB,
    acq_card_msg         BLOB,
    error_code           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX orders_by_state ON orders(state);
CREATE TABLE operations (
    rrpid           BLOB PRIMARY KEY,
    xid             BLOB NOT NULL REFERENCES orders(xid),
    kind            TEXT NOT NULL,
    currency        INTEGER NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    exp10           INTEGER NOT NULL,
    state           TEXT NOT NULL,
    request         BLOB NOT NULL,
    request_digest  BLOB NOT NULL,
    original_rrpid  BLOB,
    result_code     INTEGER NOT NULL DEFAULT 0,
    result_amount   INTEGER NOT NULL DEFAULT 0,
    batch_id        TEXT NOT NULL DEFAULT '',
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    error_code      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX operations_by_xid ON operations(xid);
CREATE TABLE batches (
    batch_id     TEXT PRIMARY KEY,
    status       INTEGER NOT NULL,
    closed       INTEGER NOT NULL,
    summary      BLOB NOT NULL,
    updated_ms   INTEGER NOT NULL
);
"""
_BATCH_REQUESTS = """
CREATE TABLE batch_requests (
    rrpid           BLOB PRIMARY KEY,
    operation       INTEGER NOT NULL,
    batch_id        TEXT NOT NULL,
    return_summary  INTEGER NOT NULL,
    starting_point  INTEGER NOT NULL,
    maximum_items   INTEGER NOT NULL,
    state           TEXT NOT NULL,
    request         BLOB NOT NULL,
    request_digest  BLOB NOT NULL,
    status          INTEGER NOT NULL DEFAULT 0,
    answer          BLOB NOT NULL DEFAULT x'',
    error_code      INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
)
"""
# One row at most: the merchant has one gateway. Its signature certificate is kept for
# its subject name alone (``GatewayIdentity``), which outlives the certificate.
_GATEWAY_PIN = """
CREATE TABLE gateway_pin (
    one          INTEGER PRIMARY KEY CHECK (one = 1),
    certificate  BLOB NOT NULL,
    brand_id     TEXT NOT NULL,
    pinned_ms    INTEGER NOT NULL
)
"""

_SENT_INDEXES = (
    f"CREATE INDEX operations_sent ON operations(kind) WHERE {SENT_ONLY}",
    f"CREATE INDEX batch_requests_sent ON batch_requests(batch_id) WHERE {SENT_ONLY}",
)

# What brings a file of version N to N + 1, by N.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2: an operation the gateway refused with a SET Error keeps its code ("failed").
    1: ("ALTER TABLE operations ADD COLUMN error_code INTEGER NOT NULL DEFAULT 0",),
    # 3: a batch opened, closed or purged is stored before it is sent, like an operation.
    2: (_BATCH_REQUESTS,),
    # 4: a request whose answers did not verify waits longer before each try (``outcome``).
    3: tuple(
        f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
        for table in ("orders", "operations", "batch_requests")
        for column in ("unverified", "retry_after_ms")
    ),
    # 5: the gateway the first PCertRes named, kept across starts (``gateway_pin``).
    4: (_GATEWAY_PIN,),
    # 6: the requests still waiting found without reading their tables whole.
    5: _SENT_INDEXES,
    # 7: the signature certificate that signed an order's PInitRes, which its PI names
    # and every AuthReq for it must be signed under (``authorizer``), renewal or not.
    6: ("ALTER TABLE orders ADD COLUMN signer_thumb BLOB",),
    # 8: a request the gateway answered with a result code this release cannot read keeps
    # the count of such answers: the gateway decided its bytes, so it is never built
    # afresh (``stored_requests``), and ``orders`` and the metrics say why it waits.
    7: tuple(
        f"ALTER TABLE {table} ADD COLUMN unreadable INTEGER NOT NULL DEFAULT 0"
        for table in ("orders", "operations", "batch_requests")
    ),
    # 9: an offer's orders found by its LID-M: every PInit counts them against
    # ``order_store.MAX_ORDERS_PER_OFFER``, and an offer declined again has several.
    8: ("CREATE INDEX orders_by_offer ON orders(lid_m)",),
}

# The column lists are in the order ``order_from_row``, ``operation_from_row`` and
# ``batch_request_from_row`` unpack; change one and the other together.
ORDER_COLUMNS = (
    "o.xid, o.lid_m, o.trans_ids, o.chall_m, f.description, f.currency, f.amount, f.exp10, "
    "f.brand_id, o.state, o.created_ms, o.updated_ms, o.cardholder_thumb, o.oi_data, o.pi, "
    "o.auth_rrpid, o.auth_request, o.auth_request_digest, o.auth_code, o.auth_amount, "
    "o.approval_code, o.auth_res, o.cap_token, o.acq_card_msg, o.error_code, o.unverified, "
    "o.retry_after_ms, o.signer_thumb, o.unreadable"
)
ORDER_FROM = "orders o JOIN offers f ON f.lid_m = o.lid_m"
OPERATION_COLUMNS = (
    "rrpid, xid, kind, currency, amount, exp10, state, request, request_digest, "
    "original_rrpid, result_code, result_amount, batch_id, created_ms, error_code, unverified, "
    "retry_after_ms, unreadable"
)
BATCH_REQUEST_COLUMNS = (
    "rrpid, operation, batch_id, return_summary, starting_point, maximum_items, state, "
    "request, request_digest, status, answer, created_ms, error_code, unverified, retry_after_ms, "
    "unreadable"
)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Give an empty file the current schema, bring an older one up to it; refuse one
    written by a newer setpay.

    ``conn`` is in autocommit mode (``isolation_level=None``); ``sqlite3`` errors pass
    through for the caller to translate. ``path`` only names the file in the error.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} has schema {version}; this setpay knows {SCHEMA_VERSION}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have just migrated it.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        # One statement at a time: executescript would commit our transaction first.
        statements: tuple[str, ...] = ()
        if version == 0:  # the tables of version 2, then the steps since
            statements, version = tuple(s for s in _SCHEMA.split(";") if s.strip()), 2
        statements += tuple(s for v in range(version, SCHEMA_VERSION) for s in _MIGRATIONS[v])
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled it back itself (a full disk)
            conn.execute("ROLLBACK")
        raise


E = TypeVar("E", bound=enum.Enum)

# A stored value is quoted in an error only when shorter than any card number (13 digits
# and up): a damaged file may hold anything, and no message may carry a PAN.
_MAX_QUOTED_CHARS = 12


def _member(kind: type[E], value: object, what: str, owner: str) -> E:
    """``kind(value)``; ``StoreError`` naming ``owner`` and ``what`` for a value no setpay
    writes (a damaged file, a hand edit, a newer setpay's state)."""
    try:
        return kind(value)
    except ValueError:
        text = str(value)
        shown = repr(value) if len(text) <= _MAX_QUOTED_CHARS else f"{len(text)} characters"
        raise StoreError(f"merchant database damaged: {owner} has {shown}, not {what}") from None


def order_from_row(row: Sequence[Any]) -> Order:
    """The ``Order`` in a row selected as ``ORDER_COLUMNS`` from ``ORDER_FROM``."""
    (xid, lid_m, trans_ids, chall_m, description, currency, amount, exp10, brand_id, state,
     created, updated, cardholder, oi_data, pi, auth_rrpid, auth_request, auth_digest,
     auth_code, auth_amount, approval, auth_res, cap_token, acq_card_msg,
     error_code, unverified, retry_after_ms, signer_thumb, unreadable) = row  # fmt: skip
    money = Money(currency, amount, exp10)
    authorization = None
    if auth_code is not None:
        authorization = Authorization(
            auth_code, money.with_minor(auth_amount), approval or "", auth_res or b"",
            cap_token or b"", acq_card_msg or b"",
        )  # fmt: skip
    return Order(
        xid=xid, lid_m=lid_m, trans_ids=trans_ids, chall_m=chall_m, description=description,
        amount=money, brand_id=brand_id, created_ms=created,
        state=_member(OrderState, state, "an order state", f"order {short(xid)}"),
        updated_ms=updated, cardholder_thumb=cardholder, oi_data=oi_data, pi=pi,
        auth_rrpid=auth_rrpid, auth_request=auth_request, auth_request_digest=auth_digest,
        authorization=authorization, error_code=error_code, unverified=unverified,
        retry_after_ms=retry_after_ms, signer_thumb=signer_thumb, unreadable=unreadable,
    )  # fmt: skip


def operation_from_row(row: Sequence[Any]) -> Operation:
    """The ``Operation`` in a row selected as ``OPERATION_COLUMNS`` from ``operations``."""
    (rrpid, xid, kind, currency, amount, exp10, state, request, digest, original, code,
     result_amount, batch_id, created, error_code, unverified, retry_after_ms,
     unreadable) = row  # fmt: skip
    owner = f"operation {short(rrpid)}"
    return Operation(
        rrpid=rrpid, xid=xid, kind=_member(OperationKind, kind, "an operation kind", owner),
        amount=Money(currency, amount, exp10),
        state=_member(OperationState, state, "an operation state", owner),
        request=request, request_digest=digest,
        original_rrpid=original, result_code=code, result_amount=result_amount,
        batch_id=batch_id, created_ms=created, error_code=error_code, unverified=unverified,
        retry_after_ms=retry_after_ms, unreadable=unreadable,
    )  # fmt: skip


def batch_request_from_row(row: Sequence[Any]) -> BatchRequest:
    """The ``BatchRequest`` in a row selected as ``BATCH_REQUEST_COLUMNS``."""
    (rrpid, operation, batch_id, summary, starting_point, maximum_items, state, request,
     digest, status, answer, created, error_code, unverified, retry_after_ms,
     unreadable) = row  # fmt: skip
    return BatchRequest(
        rrpid=rrpid, operation=operation, batch_id=batch_id, return_summary=bool(summary),
        starting_point=starting_point, maximum_items=maximum_items,
        state=_member(OperationState, state, "a request state", f"batch request {short(rrpid)}"),
        request=request, request_digest=digest, status=status, answer=answer,
        created_ms=created, error_code=error_code, unverified=unverified,
        retry_after_ms=retry_after_ms, unreadable=unreadable,
    )  # fmt: skip
