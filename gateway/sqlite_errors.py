"""SQLite's errors, sorted once for the bank's two SQLite stores: the ledger and ``ca.db``.

The ledger's SQLite backend (``gateway.ledger.sqlite``) and the CA's store
(``gateway.ca.store``) each translate sqlite3 exceptions into their own error tree, at
their own boundary; what an error means is decided here, by SQLite's result code, so that
one database fault is never an outage for one store and a failure for the other:

    OUTAGE      the database cannot be used now, whatever the statement: busy or locked
                past the busy timeout, out of memory, read-only, an I/O error, the disk
                full, the file cannot be opened, a WAL protocol error; or the file is
                damaged (CORRUPT) or is no database at all (NOTADB). Each store's
                "unavailable" error, answered UNAVAILABLE: the requester sends the same
                request again later, and its RRPID is answered once the database is back.
    CONSTRAINT  the database refused a change (SQLITE_CONSTRAINT): a bug too, which the
                stores report naming the constraint (SQLite names it, never a value).
    BUG         anything else: the statement itself is wrong (no such table or column, a
                parameter of the wrong number or type, a transaction begun inside another,
                the library misused), the same for the same request every time.

Of the outages, BUSY alone (another connection, another process's or program's, kept the
write lock past the busy timeout: ``setpay ca revoke``, an operator's shell, a VACUUM) is
one that passes once the holder lets go (``held_by_another``): each store gives it an
error class of its own (the ledger's ``StoreBusy``, the CA's ``gateway.ca.errors.
StoreBusy``), so that a worker's replacement meeting it as it opens the store is started
again (``gateway.child.PASSING_FAULTS``), while one meeting a damaged file stops the bank.
Not LOCKED: with no shared cache (neither store opens one), it is a conflict within one
connection (a table dropped under a read of its own still open), a bug that meets every
try again, though an open meeting it is still tried again up to the busy timeout.

A damaged file is an outage, not a failure: nothing was decided, and only the operator,
restoring the file from its backup, can mend it; then every request held back meanwhile
can be answered. A failure is answered with a signed SET Error (UNSPECIFIED_FAILURE,
``gateway.answers``, ``gateway.ca.servicer``): the bank's signed word on that very
request, counted as a refusal, which a requester may take as final although nothing was
decided. UNAVAILABLE has it send the same request again, with the same RRPID.
"""

from __future__ import annotations

import enum
import sqlite3

# SQLite primary result codes (the low byte of the extended code a sqlite3 exception
# carries) of a database that cannot be used now: BUSY, LOCKED, NOMEM, READONLY, IOERR,
# CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB (the module docstring says why the damaged
# file's two are among them).
_OUTAGE_CODES = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 15, 26})
_CONSTRAINT_CODE = 19  # SQLITE_CONSTRAINT
# BUSY and LOCKED: another connection holds what is needed, and may let go in a moment.
_BUSY_CODES = frozenset({5, 6})
# BUSY alone: the lock another connection holds (the module docstring).
_HELD_CODE = 5


class SqliteFault(enum.Enum):
    """What a sqlite3 error says of the database (the module docstring)."""

    OUTAGE = "outage"
    CONSTRAINT = "constraint"
    BUG = "bug"


def primary_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of ``exc``; None for the errors the sqlite3 module
    raises itself (a wrong number or type of parameters, a closed connection)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def error_name(exc: sqlite3.Error) -> str:
    """SQLite's name of ``exc``'s result code (``SQLITE_BUSY``), or its class's name."""
    return getattr(exc, "sqlite_errorname", None) or type(exc).__name__


def classify(exc: sqlite3.Error) -> SqliteFault:
    """What ``exc`` says of the database: an outage, a constraint refused, or a bug."""
    primary = primary_code(exc)
    if primary in _OUTAGE_CODES:
        return SqliteFault.OUTAGE
    if primary == _CONSTRAINT_CODE or isinstance(exc, sqlite3.IntegrityError):
        return SqliteFault.CONSTRAINT
    return SqliteFault.BUG


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLite's BUSY or LOCKED: worth a new try in a moment."""
    return primary_code(exc) in _BUSY_CODES


def held_by_another(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLite's BUSY: another connection held the lock past the busy
    timeout, a fault that passes once it lets go (the module docstring)."""
    return primary_code(exc) == _HELD_CODE
