"""``ca.db``: the certificate authority's SQLite store.

Tables (schema version 1):

    sessions        one per CardCInit / Me-AqCInit: LID-CA, LID-EE, which CA, the Chall-CA
                    issued and whether it was used, the identity a merchant gave
    responses       every answer, keyed by RRPID, with a digest of the request: a retry
                    gets the same bytes; another request under the same RRPID is refused.
                    Not a CertReq's refusal before the CA decides (it cannot be opened, its
                    signatures fail, a key is off the allow-list): it changes nothing and
                    is answered afresh
    requests        certificate requests the CA decided (pended, complete, rejected),
                    keyed by RRPID and found by (LID-EE, LID-CA) for CertInq
    certificates    every SET certificate of the brand (DER), by thumbprint and serial
    certified_keys  every public key a request ever claimed; unique, so a key is never
                    certified twice (SET-PROTOCOL.md 4.3 rule 4)
    revocations     revoked certificates
    crls            every CRL issued, by CA and cRLNumber
    bcis            every BrandCRLIdentifier, by sequence number, with the CRLs it lists

No PAN is ever written here: a cardholder request keeps the blinded account, the card's
expiry month, Nonce-CCA and the wallet's back key (so that a CertInq can be answered),
never the card number or CardSecret.

WAL with synchronous=FULL: a certificate is reported issued only after the commit that
records it (and the key it certifies) is on disk. Other processes (the other workers,
``setpay ca revoke``) coordinate through SQLite's locking: writers take BEGIN IMMEDIATE
and wait up to a busy timeout for another's write to end.

A store ``open`` made has two connections, each serialized by a lock of its own: writes
on one, reads on the other. A write may wait seconds for ca.db's write lock (another
process writing it, for as long as it likes); the reads every call of the worker makes
(the revocation watcher's poll, which the gateway's authorizations run too) never wait
for a writer under WAL, and must not queue behind one that waits. A write waits for the
lock, and for its commit's fsync, aside from the worker's turn to compute
(``gateway.cpu_turn``), as the ledger's commit does: holding the turn through a wait
would hold every other call of the worker, the gateway's among them, with it. Yet a
write that had ca.db's lock and then waited for the turn would keep ca.db shut to every
other process (``setpay ca revoke`` among them) for as long as another call computed, or
a token call did not return. So a call takes ca.db's lock only while it holds the turn
(BEGIN IMMEDIATE tried without waiting; while another holds the lock, the turn is given
up for a short pause and the try made again, for up to the busy timeout in all), and
from then until its COMMIT or ROLLBACK it never waits for the turn
(``gateway.cpu_turn.CpuTurn.unwaited``): a wait inside the write, aside from the turn
(a merchant's registration opening its ledger account, a key backend waiting for its
token as a certificate, CRL or answer is signed, the commit's fsync), takes the turn
back after only if it is free, and otherwise the write goes on without it and waits for
it once ca.db's lock is let go. A ledger call inside a write lasts as long as the ledger
takes: with the ledger in the worker, its writer applies the group such a call waits on
with the turn if it is free, else without it (``gateway.ledger.group_commit``).

A write is refused (``StoreBug``) inside the same thread's read of the store: on the
other connection it would decide on the read's older snapshot, and it would take the two
locks in the order ``close`` does not (the write's, then the reads', always).

The queries live by domain: ``registration_store`` (sessions, responses, requests, keys)
and ``certificate_store`` (certificates, revocations, CRLs, BCIs); ``StoreTransaction``
offers both. sqlite3's errors are translated here, once, by SQLite's result code, sorted
as for the ledger's SQLite store (``gateway.sqlite_errors``): the database cannot be used
now (busy or locked past the busy timeout, I/O, disk full, cannot open, a damaged file or
one that is no database; or the store closed) is ``StoreError``, an outage (``StoreBusy``
of those: the lock held by another connection past the busy timeout, a fault that passes,
so that a worker's replacement opening ca.db then is started again); a constraint it
refuses is ``ConstraintViolation`` (a bug: every check a change relies on is made in its
own write transaction, and writers are serialized); anything else (no such table or
column, a wrong parameter, a nested BEGIN, misuse) is ``StoreBug``. Only the first is
answered UNAVAILABLE: resending the same request into a bug cannot help.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path

from gateway.ca.certificate_store import CertificateQueries
from gateway.ca.errors import (
    CaError,
    ConstraintViolation,
    SchemaMismatch,
    StoreBug,
    StoreBusy,
    StoreError,
)
from gateway.ca.registration_store import RegistrationQueries
from gateway.ca.schema import ADDED_INDEXES, ADDED_TABLES, SCHEMA, SCHEMA_VERSION
from gateway.cpu_turn import PROCESS_TURN, holding
from gateway.sqlite_errors import SqliteFault, classify, error_name, held_by_another, is_busy

# How long a statement waits for another process's transaction: issuance and revocation
# hold the lock for a few signatures; five seconds covers a slow disk without hanging.
BUSY_TIMEOUT_MS = 5000
# A write that finds ca.db's lock taken tries again after a pause aside from the turn,
# doubled after each try up to the last: SQLite's own busy handler pauses as long.
FIRST_BUSY_PAUSE_S = 0.001
LAST_BUSY_PAUSE_S = 0.05
# ca.db and its -wal / -shm files: readable and writable by the bank's user only.
DATABASE_MODE = 0o600


def translate_error(exc: sqlite3.Error) -> CaError:
    """The CA's error for a sqlite3 one: ``StoreError`` (an outage),
    ``ConstraintViolation`` or ``StoreBug``; SQLite's messages name tables, columns and
    parameter positions, never a value bound to a statement."""
    fault = classify(exc)
    if fault is SqliteFault.OUTAGE:
        kind = StoreBusy if held_by_another(exc) else StoreError
        return kind(f"CA database unavailable ({error_name(exc)}): {exc}")
    if fault is SqliteFault.CONSTRAINT:
        return ConstraintViolation(f"CA database refused a change: {exc}")
    return StoreBug(f"CA database refused a statement ({error_name(exc)}): {exc}")


class StoreTransaction(RegistrationQueries, CertificateQueries):
    """The queries of one transaction (obtained from ``CaStore.read`` / ``CaStore.write``)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def schema_version(self) -> int | None:
        """The schema version the database records (None: not a setpay CA database)."""
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if exists is None:
            return None
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return None if row is None else int(row[0])

    def subjects_issued(self, issuer_thumb: bytes, certificate_type: int) -> frozenset[str]:
        """The subjects of the certificates of ``certificate_type`` that the CA whose
        certificate has the thumbprint ``issuer_thumb`` issued, revoked or ended ones too.

        Read through the index of the UNIQUE (issuer_thumb, serial) constraint, so only
        that CA's rows, without their DER: a pruning asks for the Merchant CA's merchants,
        which a listing of every certificate found among a row per cardholder (1.3 s at
        300,000 rows; this, 1 ms for 200 merchants, 12 ms for 5,000)."""
        rows = self._db.execute(
            "SELECT DISTINCT subject FROM certificates"
            " WHERE issuer_thumb = ? AND certificate_type = ?",
            (issuer_thumb, certificate_type),
        )
        return frozenset(str(row[0]) for row in rows)

    def purge(
        self,
        sessions_before_ms: int,
        responses_before_ms: int,
        *,
        session_kinds: Sequence[str] = (),
        session_answers_before_ms: int = 0,
    ) -> None:
        """Forget expired sessions and old stored answers (decided requests are kept); the
        answers of ``session_kinds`` made before ``session_answers_before_ms`` too."""
        self._db.execute("DELETE FROM sessions WHERE expires_ms < ?", (sessions_before_ms,))
        # One statement, so one pass over responses (no index serves either condition): a
        # statement per kind read the whole table once more each, in the sweep's write
        # transaction.
        marks = ", ".join("?" * len(session_kinds)) or "NULL"
        self._db.execute(
            f"DELETE FROM responses WHERE created_ms < ? OR (kind IN ({marks}) AND created_ms < ?)",  # noqa: S608 - fixed text
            (responses_before_ms, *session_kinds, session_answers_before_ms),
        )


class CaStore:
    """The CA's SQLite database: open once, then ``read()`` / ``write()`` transactions."""

    def __init__(self, connection: sqlite3.Connection, path: Path, busy_timeout_ms: int) -> None:
        self._db = connection
        self._path = path
        # How long a write tries for ca.db's lock (``_begin_write``): the connection's.
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = threading.RLock()
        # Reads share the writes' connection and lock until ``open`` gives them their own.
        self._reader = connection
        self._read_lock = self._lock
        # Set in a thread while it is in a write transaction (``read``) or a read (``write``).
        self._in_write = threading.local()
        self._in_read = threading.local()
        self._closed = False

    @property
    def path(self) -> Path:
        """Where the database lives."""
        return self._path

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> CaStore:
        """Open ``ca.db`` (creating its schema when ``create``); checks the schema version."""
        if create:
            try:
                # Owner only: the store keeps the wallets' back keys (SQLite gives the
                # -wal and -shm files the database file's permissions).
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATABASE_MODE))
            except FileExistsError:
                pass  # made before, or by another process just now: its schema is checked
            except OSError as exc:
                raise StoreError(f"cannot create CA database {path}: {exc.strerror}") from exc
        elif not path.exists():
            raise StoreError(f"no CA database at {path}")
        try:
            db = _connect(path, "rw", BUSY_TIMEOUT_MS)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open CA database {path}: {exc}") from exc
        store = cls(db, path, BUSY_TIMEOUT_MS)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            store._prepare(create)
            store._open_reader()
        except sqlite3.Error as exc:
            store.close()
            raise _unopened(path, exc) from exc
        except BaseException:  # SchemaMismatch: not a database of ours, or not of this code
            store.close()
            raise
        return store

    @classmethod
    def open_readonly(cls, path: Path) -> CaStore:
        """Open ``ca.db`` for reading only (``setpay ca list``); checks the schema version.

        Nothing is written, not even the journal mode: the running bank set WAL when it
        created the file, and SQLite keeps it.
        """
        if not path.exists():
            raise StoreError(f"no CA database at {path}")
        try:
            db = _connect(path, "ro", BUSY_TIMEOUT_MS)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open CA database {path}: {exc}") from exc
        store = cls(db, path, BUSY_TIMEOUT_MS)
        try:
            with store.read() as tx:
                _check_version(path, tx.schema_version())
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_for_sweep(cls, path: Path, busy_timeout_ms: int) -> CaStore:
        """``ca.db`` on a connection of its own that waits ``busy_timeout_ms`` for a lock
        (the CA's sweep: none), without ``open``'s pragmas and schema check: WAL stays
        from the store's creation, a purge deletes rows no foreign key refers to, and the
        worker opened the store with ``open`` before."""
        try:
            db = _connect(path, "rw", busy_timeout_ms)
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc
        return cls(db, path, busy_timeout_ms)

    def _open_reader(self) -> None:
        """Give reads a connection and a lock of their own (the module docstring says why):
        WAL lets them read the last commit while a write waits or runs."""
        self._reader = _connect(self._path, "rw", BUSY_TIMEOUT_MS)
        self._read_lock = threading.RLock()

    def _prepare(self, create: bool) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                exists = self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                ).fetchone()
                if exists is None and create:
                    for statement in SCHEMA:
                        self._db.execute(statement)
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                _check_version(self._path, StoreTransaction(self._db).schema_version())
                # Tables first: an added index may be on an added table.
                for statement in (*ADDED_TABLES, *ADDED_INDEXES):
                    self._db.execute(statement)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connections, once the transactions under way have ended.

        The write's lock first, then the reads': the order a read begun inside a write
        takes them (on the write's own connection), and the only one (``write`` is
        refused inside a read). Each waited for without the turn (a write's holder may
        wait for it)."""
        with holding(self._lock), holding(self._read_lock):
            self._closed = True
            self._db.close()
            if self._reader is not self._db:
                self._reader.close()

    @contextmanager
    def _transaction(
        self, db: sqlite3.Connection, lock: threading.RLock, *, writing: bool
    ) -> Iterator[StoreTransaction]:
        # The lock is waited for without the worker's turn to compute: a merchant's
        # registration opens its ledger account inside the write lock
        # (gateway.cpu_turn.holding). A write's BEGIN waits for another process's write
        # aside from the turn (``_begin_write``), and its COMMIT for the disk.
        if writing and getattr(self._in_read, "active", False):
            raise StoreBug("a CA write begun inside the same thread's read transaction")
        with holding(lock):
            if self._closed:
                # A request still running while the bank shuts down: an outage, answered
                # UNAVAILABLE; the requester sends it again once the CA is back.
                raise StoreError("CA database closed")
            try:
                if writing:
                    self._begin_write(db)
                else:
                    db.execute("BEGIN")
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
            flags = self._in_write if writing else self._in_read
            outer = getattr(flags, "active", False)
            flags.active = True
            try:
                # ca.db's lock is ours until the COMMIT or ROLLBACK: no wait inside (the
                # ledger, a key backend, a lock) waits for the turn after it.
                with _unwaited(writing):
                    try:
                        yield StoreTransaction(db)
                        with _aside(writing):
                            db.execute("COMMIT")
                    except sqlite3.Error as exc:
                        _rollback(db)
                        raise translate_error(exc) from exc
                    except BaseException:
                        _rollback(db)
                        raise
            finally:
                flags.active = outer

    def _begin_write(self, db: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, tried with the turn held and without waiting; while another
        connection holds ca.db's lock, tried again after a pause aside from the turn, for
        up to the busy timeout in all (then SQLite's BUSY error, an outage). The lock is
        never ours while the turn is waited for (the module docstring says why)."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        pause = FIRST_BUSY_PAUSE_S
        db.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    left = deadline - time.monotonic()
                    if not is_busy(exc) or left <= 0:
                        raise
                with PROCESS_TURN.aside():
                    time.sleep(min(pause, left))
                pause = min(pause * 2, LAST_BUSY_PAUSE_S)
        finally:
            db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")

    def read(self) -> AbstractContextManager[StoreTransaction]:
        """A read transaction (a consistent snapshot of the last commit).

        Begun inside the thread's own write transaction, on the write's connection, where
        SQLite refuses it (``StoreBug``) as the caller's bug it is: on the other it would
        read without the write's changes."""
        if getattr(self._in_write, "active", False):
            return self._transaction(self._db, self._lock, writing=False)
        return self._transaction(self._reader, self._read_lock, writing=False)

    def write(self) -> AbstractContextManager[StoreTransaction]:
        """A write transaction: taken at once (BEGIN IMMEDIATE), committed durably on exit.

        Refused (``StoreBug``) inside the thread's own read transaction, as the caller's
        bug it is: it would write on what the read's older snapshot showed."""
        return self._transaction(self._db, self._lock, writing=True)


def _aside(writing: bool) -> AbstractContextManager[None]:
    """The worker's turn given up for a write's COMMIT (the disk); kept for a read's."""
    return PROCESS_TURN.aside() if writing else nullcontext()


def _unwaited(writing: bool) -> AbstractContextManager[None]:
    """A write's transaction never waits for the worker's turn (``CpuTurn.unwaited``)."""
    return PROCESS_TURN.unwaited() if writing else nullcontext()


def _rollback(db: sqlite3.Connection) -> None:
    # The transaction may already be gone (SQLite rolls back on some errors itself).
    with suppress(sqlite3.Error):
        db.execute("ROLLBACK")


def _connect(path: Path, mode: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection to ``ca.db`` at ``path``, opened ``mode`` (``rw`` or ``ro``).

    Either way SQLite never makes the file (``CaStore.open`` makes it, with its mode, or
    nothing does), even when it goes away after a check. isolation_level=None:
    transactions are begun explicitly (BEGIN IMMEDIATE for writers), never by sqlite3.
    """
    return sqlite3.connect(
        f"{path.resolve().as_uri()}?mode={mode}",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        timeout=busy_timeout_ms / 1000,
    )


def _unopened(path: Path, exc: sqlite3.Error) -> StoreError:
    """The error of ``open`` meeting ``exc``: ``StoreBusy`` if another connection held
    ca.db's lock past the busy timeout (its schema's BEGIN IMMEDIATE), a fault that passes;
    otherwise ``StoreError`` (a damaged file, one that is no database)."""
    kind = StoreBusy if held_by_another(exc) else StoreError
    return kind(f"cannot open CA database {path}: {exc}")


def _check_version(path: Path, found: int | None) -> None:
    """SchemaMismatch unless the database records this version's schema."""
    if found is None:
        raise SchemaMismatch(f"{path} holds no setpay CA schema")
    if found != SCHEMA_VERSION:
        raise SchemaMismatch(f"{path}: schema {found}, need {SCHEMA_VERSION}")
