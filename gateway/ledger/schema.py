"""The ledger's schema as numbered migrations, one text for SQLite and PostgreSQL.

``MIGRATIONS[n - 1]`` takes a database from version ``n - 1`` to ``n``; the version is kept
in ``schema_version``. A store applies the missing migrations when it opens and refuses a
database newer than this code. A version's statements and its version bump are always
committed together, so a database is at one version or the next, never between:

- PostgreSQL commits each version in a transaction of its own (``migrate_next``, called
  by ``postgres_migration`` until none is missing). Its migration gives way to the
  transactions holding a table it must lock and tries again; in one transaction for all
  the versions, every retry would undo and redo the finished ones, version 4's index
  builds among them, and their locks would block the serving bank's writes again.
- SQLite applies every missing version in one transaction (``migrate``): it holds the
  whole file's write lock from its first statement, so nothing it does waits for a
  reader and gives way, and a store that stops midway leaves the file as it found it.

The tables (amounts are integer minor units, currencies ISO 4217 numeric):

- ``accounts``: every ledger account (card or merchant) with TigerBeetle's four balances.
  A transfer debits one account and credits another; the four columns are the running
  sums, and ``check_balanced`` recomputes them from ``transfers``.
- ``card_accounts`` / ``merchant_accounts``: what the issuer knows about each account.
  The PAN is only sealed (``pan_sealed``) and keyed-hashed (``pan_index``); (version 5)
  ``enrolment_hash``, the keyed hash of the card's enrolment code, NULL for none.
- ``holds``: one per approved authorization, the pending transfer card -> merchant and
  what has since been captured, refunded and reversed against it.
- ``transfers``: the append-only journal of postings. ``phase`` says how a transfer
  moves the balances: ``pending`` (hold), ``post`` (capture of a hold), ``void``
  (release or expiry of a hold), ``single`` (one-phase: credits and reversals).
- ``batches``: settlement batches, at most one open per merchant.
- ``pi_uses``: the payment-instruction replay store, keyed by XID; (version 4)
  ``dead_after_ms``, from when no decision can approve the PI again.
- ``requests``: one row per RRPID decided or (version 7) fenced (idempotency): the
  response bytes stored for it, or (version 2) while the response is still being built
  outside the transaction, an empty ``response`` and the decided ``outcome`` as JSON
  (``outcome_codec``), which is set back to NULL when the response is stored; and
  (version 3) ``checked_at_ms``, the moment the gateway checked the request, so that an
  unanswered decision's answer can be built later with every check made as of that
  moment. A fence is an empty ``response`` with no ``outcome``. (version 8)
  ``settled_at_ms`` and ``settled_reason``: when an operator settled by hand a decision
  whose answer can never be built (``unanswered``), and why; NULL for every other row.
- ``retention_marks`` (version 4): how far the pruning of ``requests`` has gone
  (``retention``, which says what is pruned and why it is safe).
- ``ledger_key_check`` (version 5): one row, a MAC under the index key and a ciphertext
  under the data key of fixed texts, that says which ledger keys the ledger is kept under
  (``key_check``).

Version 6 drops an index no statement needed (``_V6``). Version 7 changes no table: it
marks a ledger that may hold fences in ``requests`` (``_V7``). Version 8 adds the
settlement by hand of a decision left unanswered (``_V8``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.ledger.errors import SchemaError
from gateway.ledger.store import Row, Transaction


@dataclass(frozen=True)
class Dialect:
    """The few type names that differ between the SQL databases the ledger runs on."""

    name: str
    blob: str
    int64: str
    serial_pk: str
    table_options: str


SQLITE = Dialect(
    name="sqlite",
    blob="BLOB",
    int64="INTEGER",
    serial_pk="INTEGER PRIMARY KEY",
    # STRICT: SQLite enforces the declared column types instead of converting.
    table_options=" STRICT",
)
POSTGRES = Dialect(
    name="postgres",
    blob="BYTEA",
    int64="BIGINT",
    serial_pk="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    table_options="",
)

_V1 = (
    """CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('card', 'merchant')),
        currency INTEGER NOT NULL CHECK (currency BETWEEN 1 AND 999),
        debits_pending {int64} NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
        debits_posted {int64} NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
        credits_pending {int64} NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
        credits_posted {int64} NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
        opened_at_ms {int64} NOT NULL
    ){table_options}""",
    """CREATE TABLE card_accounts (
        account_id TEXT PRIMARY KEY REFERENCES accounts (id),
        pan_index {blob} NOT NULL UNIQUE,
        pan_sealed {blob} NOT NULL,
        masked_pan TEXT NOT NULL,
        expiry TEXT NOT NULL CHECK (length(expiry) = 6),
        status TEXT NOT NULL CHECK (status IN ('active', 'blocked', 'closed')),
        credit_limit {int64} NOT NULL CHECK (credit_limit >= 0)
    ){table_options}""",
    """CREATE TABLE merchant_accounts (
        account_id TEXT PRIMARY KEY REFERENCES accounts (id),
        merchant_id TEXT NOT NULL UNIQUE
    ){table_options}""",
    """CREATE TABLE holds (
        id TEXT PRIMARY KEY,
        card_account_id TEXT NOT NULL REFERENCES accounts (id),
        merchant_account_id TEXT NOT NULL REFERENCES accounts (id),
        xid {blob} NOT NULL,
        auth_rrpid {blob} NOT NULL,
        currency INTEGER NOT NULL,
        amount {int64} NOT NULL,
        pending {int64} NOT NULL,
        captured {int64} NOT NULL DEFAULT 0,
        capture_reversed {int64} NOT NULL DEFAULT 0,
        credited {int64} NOT NULL DEFAULT 0,
        credit_reversed {int64} NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('pending', 'closed', 'expired')),
        expires_at_ms {int64} NOT NULL,
        created_at_ms {int64} NOT NULL,
        CHECK (pending >= 0 AND captured >= 0 AND captured <= amount),
        CHECK (capture_reversed >= 0 AND capture_reversed <= captured),
        CHECK (credit_reversed >= 0 AND credit_reversed <= credited),
        CHECK (credited - credit_reversed <= captured - capture_reversed)
    ){table_options}""",
    "CREATE INDEX holds_by_card ON holds (card_account_id, status, expires_at_ms)",
    "CREATE INDEX holds_by_expiry ON holds (status, expires_at_ms)",
    """CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        merchant_account_id TEXT NOT NULL REFERENCES accounts (id),
        status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'purged')),
        opened_at_ms {int64} NOT NULL,
        closed_at_ms {int64},
        last_seq {int64} NOT NULL DEFAULT 0
    ){table_options}""",
    # At most one open batch per merchant, enforced by the database itself.
    "CREATE UNIQUE INDEX batches_one_open ON batches (merchant_account_id) WHERE status = 'open'",
    """CREATE TABLE transfers (
        id {serial_pk},
        kind TEXT NOT NULL CHECK (kind IN ('authorization', 'authorization-reversal',
            'expiry', 'capture', 'capture-reversal', 'credit', 'credit-reversal')),
        phase TEXT NOT NULL CHECK (phase IN ('pending', 'post', 'void', 'single')),
        debit_account_id TEXT NOT NULL REFERENCES accounts (id),
        credit_account_id TEXT NOT NULL REFERENCES accounts (id),
        amount {int64} NOT NULL CHECK (amount > 0),
        currency INTEGER NOT NULL,
        hold_id TEXT REFERENCES holds (id),
        rrpid {blob},
        reverses_id {int64} REFERENCES transfers (id),
        batch_id TEXT REFERENCES batches (id),
        batch_seq {int64},
        created_at_ms {int64} NOT NULL,
        CHECK (debit_account_id <> credit_account_id)
    ){table_options}""",
    # A capture or credit is reversed at most once, whatever the concurrency.
    "CREATE UNIQUE INDEX transfers_one_reversal ON transfers (reverses_id)"
    " WHERE reverses_id IS NOT NULL",
    # Captures and credits are found by (hold, request RRPID) for their reversals.
    "CREATE UNIQUE INDEX transfers_by_request ON transfers (hold_id, kind, rrpid)"
    " WHERE kind IN ('capture', 'credit')",
    "CREATE UNIQUE INDEX transfers_batch_seq ON transfers (batch_id, batch_seq)"
    " WHERE batch_id IS NOT NULL",
    "CREATE INDEX transfers_by_hold ON transfers (hold_id)",
    """CREATE TABLE pi_uses (
        xid {blob} PRIMARY KEY,
        pi_digest {blob} NOT NULL,
        rrpid {blob} NOT NULL,
        used_at_ms {int64} NOT NULL
    ){table_options}""",
    """CREATE TABLE requests (
        rrpid {blob} PRIMARY KEY,
        request_digest {blob} NOT NULL,
        response {blob} NOT NULL,
        created_at_ms {int64} NOT NULL
    ){table_options}""",
)

# Version 2: responses are built outside the write transaction (``idempotency``), so a
# decision can be committed before its response exists. A column added without a
# default: no table rewrite on either database.
_V2 = ("ALTER TABLE requests ADD COLUMN outcome TEXT",)

# Version 3: the moment the gateway checked a request (its date, its certificates), which
# is a few milliseconds before the ledger decides it. An answer built after a failure is
# checked as of this moment: as of the decision, a date checked at the window's edge
# would have aged out. NULL when unknown (rows written before, a caller that gave none):
# the decision's time stands in.
_V3 = ("ALTER TABLE requests ADD COLUMN checked_at_ms {int64}",)

# Version 4: retention (``retention``). Each request row is found by age, and a refund by
# its RRPID (a partial index: only credits pay for it), so a prune batch reads index
# ranges, never a table; each XID keeps the moment its PI can no longer be approved; and
# the mark records how far the scan of ``requests`` has gone. The indexes are built when
# the store opens: minutes on a ledger of many millions of rows, once.
_V4 = (
    "CREATE INDEX requests_by_age ON requests (created_at_ms, rrpid)",
    "CREATE INDEX transfers_credit_by_rrpid ON transfers (rrpid) WHERE kind = 'credit'",
    "ALTER TABLE pi_uses ADD COLUMN dead_after_ms {int64}",
    "CREATE INDEX pi_uses_by_death ON pi_uses (dead_after_ms)",
    """CREATE TABLE retention_marks (
        name TEXT PRIMARY KEY,
        through_ms {int64} NOT NULL,
        through_key TEXT NOT NULL
    ){table_options}""",
    "INSERT INTO retention_marks (name, through_ms, through_key) VALUES ('requests', -1, '')",
)

# V5: a card account's enrolment code, as its keyed hash (``pan.enrolment_code_hash``);
# NULL for a card opened before codes existed, which the CA still locks after repeated
# refusals (``gateway.ca.card_failures``) until the bank gives it a code.
# And the ledger's key check (``key_check``): which ledger keys the ledger is kept under,
# so that a keys file that is not its own is refused. One row, or none before the first
# open with keys.
_V5 = (
    "ALTER TABLE card_accounts ADD COLUMN enrolment_hash {blob}",
    """CREATE TABLE ledger_key_check (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        index_check {blob} NOT NULL,
        data_check {blob} NOT NULL,
        written_at_ms {int64} NOT NULL
    ){table_options}""",
)

# Version 6: ``transfers_by_hold`` dropped. No statement of the ledger needs it: a
# reversal finds its original through ``transfers_by_request``, whose first column is
# the hold; a batch's transfers, a refund's RRPID and a reversal's original have indexes
# of their own. Only ``books.check_balanced``, an audit that reads the whole journal
# anyway, walked it to find a transfer outside any hold; it scans the table instead.
# Every transfer paid for it, an authorization's among them: one B-tree more to write
# (docs/BENCHMARKS.md, twenty-eighth round).
_V6 = ("DROP INDEX transfers_by_hold",)

# Version 7: no statement. ``requests`` may hold fences from now on (a refusal as too
# old made final, ``idempotency.fence``: an empty ``response`` and no ``outcome``), which
# code of version 6 would read as a stored answer of no bytes and send as a request's
# answer. The version alone makes that code refuse the database, as newer than it.
_V7: tuple[str, ...] = ()

# Version 8: a decision awaiting its answer that an operator settled by hand
# (``unanswered.settle``: its merchant gone, or a certificate it names revoked since, so
# that no answer can ever be built), when and why. Its ``outcome`` stays, for audit, and
# its empty ``response``: code of version 7 would read such a row as a decision to answer,
# build that answer at the merchant's retry and keep counting it against the pruning of
# key-exchange keys; the version makes that code refuse the database. Two columns of the
# row itself, not a table of their own: the lookup every resend makes already reads the
# row by its key, and the settling, the answer and retention each change or drop that one
# row. Added without a default: no table rewrite on either database, as version 2.
_V8 = (
    "ALTER TABLE requests ADD COLUMN settled_at_ms {int64}",
    "ALTER TABLE requests ADD COLUMN settled_reason TEXT",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8)
"""Statement lists, one per schema version; append, never edit a released one."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes."""


# A statement's fields: a name in braces. Only the dialect's type names are filled in.
_FIELD = re.compile(r"\{(\w*)\}")


def _render(statement: str, dialect: Dialect) -> str:
    """``statement`` with the type names of ``dialect`` (``SQLITE`` or ``POSTGRES``, no
    other) in its fields ``{blob}``, ``{int64}``, ``{serial_pk}``, ``{table_options}``;
    SchemaError for another dialect, any other field, or a brace outside a field.

    Not ``str.format``: it follows a field's attributes and items (``{blob.__class__}``
    and on to any module's globals), and this is a function a ledger frame may name
    (``wire``), so a frame could have read through it what the ledger process holds."""
    if dialect is not SQLITE and dialect is not POSTGRES:
        raise SchemaError("a ledger statement rendered for a dialect that is not the ledger's")
    names = {
        "blob": dialect.blob,
        "int64": dialect.int64,
        "serial_pk": dialect.serial_pk,
        "table_options": dialect.table_options,
    }
    if not isinstance(statement, str):
        raise SchemaError("a ledger statement that is not text")
    outside = _FIELD.sub("", statement)
    if "{" in outside or "}" in outside or not names.keys() >= set(_FIELD.findall(statement)):
        raise SchemaError("a ledger statement with a field other than the dialect's types")
    return _FIELD.sub(lambda field: names[field.group(1)], statement)


# The tables and views a ledger would be created among: SQLite's whole file (less its
# own sqlite_ tables), PostgreSQL's schema that CREATE TABLE puts them in (the first of
# the search_path that exists).
_TABLES_SQL = {
    SQLITE.name: "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
    " AND name NOT LIKE 'sqlite!_%' ESCAPE '!'",
    POSTGRES.name: "SELECT c.relname AS name FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
}


def _refuse_another_programs_database(tx: Transaction, dialect: Dialect) -> None:
    """SchemaError if the database records no ledger version yet holds tables: it belongs
    to another program (a CA's ``ca.db``, a shared schema), and a ledger created among
    its tables would mix with them and be backed up, restored and dropped with them."""
    names = {str(row["name"]) for row in tx.all(_TABLES_SQL[dialect.name])}
    if "schema_version" in names and tx.all("SELECT version FROM schema_version"):
        return  # a ledger's: current_version checks its record
    others = sorted(names - {"schema_version"})
    if others:
        raise SchemaError(
            "the database is not a ledger database: it records no ledger schema version"
            f" but holds {len(others)} table(s) of another program (first: {others[0]});"
            " nothing was changed: give the ledger a database (or schema) of its own"
        )


def current_version(tx: Transaction, dialect: Dialect | None = None) -> int:
    """The schema version recorded in the database (0 for an empty one); SchemaError if
    the record is not one a release of this code wrote: one row, a version from 1 up.

    With ``dialect`` (``migrate`` gives it), first SchemaError for another program's
    database, before anything is created in it.
    """
    if dialect is not None:
        _refuse_another_programs_database(tx, dialect)
    tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    return recorded_version(tx.all("SELECT version FROM schema_version"))


def recorded_version(rows: Sequence[Row]) -> int:
    """The schema version the rows of ``schema_version`` record (0 for none); SchemaError
    if they are not a record a release of this code wrote: one row, a version from 1 up.
    Read so by ``current_version`` and by a PostgreSQL store opened ``read_only``, which
    reads the rows without the CREATE TABLE (``postgres_migration.require_current``)."""
    if not rows:
        return 0
    # A migration from a version no release wrote would apply the wrong statements: never
    # guess (SQLite keeps a text or real value in this column as given).
    version = rows[0]["version"]
    if len(rows) > 1 or type(version) is not int or version < 1:
        raise SchemaError(
            "the ledger database records no schema version this code knows"
            f" ({len(rows)} row(s) in schema_version): it is damaged, or not a ledger"
        )
    return version


def schema_version_refusal(found: int) -> str:
    """Why a store opened ``read_only`` refuses a ledger at schema version ``found``,
    not this code's: it reads only the version it writes, and migrates nothing."""
    if found == 0:
        return (
            "no ledger here: the database records no ledger schema version; nothing was"
            " changed, and none is made"
        )
    if found > SCHEMA_VERSION:
        return (
            f"the ledger database has schema version {found}; this code knows up to"
            f" {SCHEMA_VERSION}: read it with the release that wrote it"
        )
    return (
        f"the ledger database has schema version {found}, this release's is {SCHEMA_VERSION}:"
        " it is read only once migrated, which this command does not do (the bank does as"
        " it starts, setpay gateway serve); nothing was changed"
    )


def migrate(tx: Transaction, dialect: Dialect) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` inside ``tx``; return the version found.

    The caller holds whatever lock makes this exclusive (SQLite's write lock) and commits.
    """
    found = migrate_next(tx, dialect)
    for _ in range(found + 1, SCHEMA_VERSION):
        migrate_next(tx, dialect)
    return found


def migrate_next(tx: Transaction, dialect: Dialect) -> int:
    """Apply the first missing version, and only it, inside ``tx``; return the version
    found (``SCHEMA_VERSION`` when none is missing: nothing was changed).

    The caller holds whatever lock makes this exclusive (a PostgreSQL advisory lock) and
    commits: then the database is at the version after the one returned.
    """
    found = current_version(tx, dialect)
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the ledger database has schema version {found}; this code knows up to"
            f" {SCHEMA_VERSION}: upgrade the code, do not downgrade the database"
        )
    if found < SCHEMA_VERSION:
        version = found + 1
        for statement in MIGRATIONS[version - 1]:
            tx.run(_render(statement, dialect))
        tx.run("DELETE FROM schema_version")
        tx.run("INSERT INTO schema_version (version) VALUES (?)", version)
    return found
