"""The SQLite ledger store: the embedded default, one database file.

- WAL journal with ``synchronous=FULL``: a commit is on disk before it returns, and
  readers never block the writer nor each other.
- One writer thread per process owns the write connection and groups commits
  (``group_commit``). Processes on one file take turns on a lock file beside it
  (``write_lock``: ``<database>.write-lock``) before each BEGIN IMMEDIATE, rather than
  in SQLite's busy handler, whose millisecond sleeps were the latency under load.
- Reads run on a small pool of ``query_only`` connections, each read in one snapshot.
- The schema is migrated when the store opens; a database newer than the code is refused,
  and so is another program's (``schema``), read over a read-only connection before the
  store changes anything of the file (its mode, its journal mode).
- Opened ``read_only`` (an audit beside the bank: ``setpay bank check-books``), the store
  is its reads alone, on ``mode=ro`` connections: no writer, no lock file, no migration,
  no change to the file's mode; a file holding no ledger, or one at another schema
  version than this code's, is refused (SchemaError) rather than created or migrated.

sqlite3 exceptions are translated here, once, as ``gateway.sqlite_errors`` sorts them for
the CA's ca.db too: the database cannot be used now (busy, locked, I/O, disk full, cannot
open, a damaged file or one that is no database) is StoreUnavailable, answered
UNAVAILABLE; anything else (a constraint, a bug) StoreError. Of those outages, SQLITE_BUSY
(another connection, another program's or process's, kept the write lock past the busy
timeout) is StoreBusy, a fault that passes: a worker's replacement meeting it as it
migrates is started again (``gateway.child``); the rest last until the operator acts.
SQLITE_LOCKED among them: with no shared cache (the store opens none), it is a conflict
within one connection (a table dropped under a read of its own still open), a bug that
meets every try again, which taken for passing had a replacement retried for ever.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.cpu_turn import PROCESS_TURN, CpuTurn
from gateway.ledger.errors import SchemaError, StoreBusy, StoreError, StoreUnavailable
from gateway.ledger.group_commit import Completion, GroupCommitConfig, GroupCommitWriter
from gateway.ledger.schema import (
    SCHEMA_VERSION,
    SQLITE,
    current_version,
    migrate,
    schema_version_refusal,
)
from gateway.ledger.store import CommitObserver, LedgerStore, Row, Transaction
from gateway.ledger.write_lock import WriteTurn
from gateway.sqlite_errors import SqliteFault, classify, error_name, is_busy, primary_code

R = TypeVar("R")

# ledger.db and its -wal and -shm files (which SQLite creates with the database file's
# permissions) are the bank's user's alone, whatever the umask: they hold the sealed PANs,
# the balances, and each card's masked number and expiry in clear.
DATABASE_MODE = 0o600
_WAL_SUFFIXES = ("-wal", "-shm")

# How long a write waits for another process's write lock before StoreUnavailable: long
# enough to ride out a peer's group commit or a WAL checkpoint, short enough to give up
# on a wedged peer while the gateway's client deadline is still running.
BUSY_TIMEOUT_MS = 5000
# Read connections per process: reads are short snapshot queries; a handful covers the
# gateway's worker threads without holding many WAL read marks open.
READ_CONNECTIONS = 4
# How long a read waits for a free read connection before StoreUnavailable.
READ_WAIT_SECONDS = 10.0

# Pause between tries of opening a busy database.
OPEN_RETRY_PAUSE_SECONDS = 0.02
# How long one try of an opening that a stop may end (``SqliteLedgerStore``'s ``stopped``)
# waits in SQLite's busy handler: tried again up to the busy timeout, as one wait would
# be, the stop is seen within about this. One wait of the whole timeout held a ledger
# process asked to stop until it was over, and twice that when the stop signal cut one
# of the handler's sleeps short (SQLite counts its sleeps as asked, not as slept).
STOPPABLE_TRY_MS = 100
# SQLite's primary result code for a lock another connection holds (StoreBusy); not
# SQLITE_LOCKED (6), which ``sqlite_errors.is_busy`` counts too (the module docstring).
_SQLITE_BUSY = 5


@dataclass(frozen=True)
class SqliteStoreConfig:
    """Limits of the SQLite store (the module constants by default)."""

    group_commit: GroupCommitConfig = field(default_factory=GroupCommitConfig)
    busy_timeout_ms: int = BUSY_TIMEOUT_MS
    read_connections: int = READ_CONNECTIONS
    read_wait_seconds: float = READ_WAIT_SECONDS


def translate_error(exc: sqlite3.Error) -> StoreError:
    """The ledger's error for a sqlite3 one (its message names no stored value)."""
    fault = classify(exc)
    error: StoreError
    if fault is SqliteFault.OUTAGE:
        # BUSY past the busy timeout: another connection holds the lock, and lets go. Not
        # LOCKED, one connection's conflict with itself (the module docstring), though an
        # open meeting it is still tried again up to the busy timeout (``_retrying_busy``).
        kind = StoreBusy if primary_code(exc) == _SQLITE_BUSY else StoreUnavailable
        error = kind(f"SQLite is unavailable ({error_name(exc)})")
    elif fault is SqliteFault.CONSTRAINT:
        # SQLite names the constraint ("UNIQUE constraint failed: t.c"), never the values.
        error = StoreError(f"SQLite refused a change: {exc}")
    else:
        error = StoreError(f"SQLite failed ({error_name(exc)})")
    error.__cause__ = exc
    return error


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


class SqliteTransaction(Transaction):
    """The ledger rules' view of an open SQLite transaction."""

    row_lock = ""  # one writer at a time holds the database's write lock

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap a connection that is inside a transaction."""
        self._conn = conn

    def one(self, sql: str, *params: object) -> Row | None:
        """The first row of a query, or None."""
        cursor = self._conn.execute(sql, params)
        try:
            row: Row | None = cursor.fetchone()
        finally:
            cursor.close()
        return row

    def all(self, sql: str, *params: object) -> list[Row]:
        """Every row of a query."""
        return self._conn.execute(sql, params).fetchall()

    def run(self, sql: str, *params: object) -> int:
        """Execute a statement; return the number of rows it changed."""
        return self._conn.execute(sql, params).rowcount


def _make_private(path: str) -> None:
    """Create the database file owner-only before SQLite opens it; narrow it, and its
    -wal and -shm files, where an older setpay left them wider."""
    # An existing file was made before, or by another worker just now.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DATABASE_MODE))
    for name in (path, *(path + suffix for suffix in _WAL_SUFFIXES)):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except FileNotFoundError:
            continue
        if mode & ~DATABASE_MODE:
            os.chmod(name, mode & DATABASE_MODE)


# Any table or view of a program (SQLite's own sqlite_ tables aside): a file without one is
# new or empty, the ledger's to create.
_ANY_TABLE = (
    "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view')"
    " AND name NOT LIKE 'sqlite!_%' ESCAPE '!' LIMIT 1"
)


def _read_only_connection(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection that can change nothing of the file at ``path`` (``mode=ro``, and
    ``query_only``), nor create it: SQLite's CANTOPEN where it is not there. Reading a WAL
    file, SQLite makes its -wal and -shm files if they are not there, with the database
    file's own mode, as any reader's connection does."""
    conn = sqlite3.connect(
        f"{Path(path).absolute().as_uri()}?mode=ro",
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,  # the store issues BEGIN itself
        check_same_thread=False,  # pooled readers move between threads, one at a time
        uri=True,
    )
    try:
        conn.row_factory = _dict_row
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _require_this_version(tx: Transaction) -> None:
    """SchemaError unless the database holds a ledger at ``SCHEMA_VERSION``, read without
    creating or changing anything (a store opened ``read_only`` migrates nothing)."""
    if tx.one(_ANY_TABLE) is None:
        raise SchemaError(
            "no ledger here: the database holds no table (an empty file, or one the ledger"
            " was never created in); nothing was changed, and none is made"
        )
    # Another program's file is refused by it; in a file holding tables, its CREATE TABLE
    # IF NOT EXISTS finds its table or is never reached (``_refuse_another_programs_file``).
    found = current_version(tx, SQLITE)
    if found != SCHEMA_VERSION:
        raise SchemaError(schema_version_refusal(found))


def _refuse_another_programs_file(path: str, busy_timeout_ms: int) -> None:
    """SchemaError (``schema.current_version``) if the file at ``path`` holds another
    program's database, read before this store changes anything of it.

    The store narrows its file to ``DATABASE_MODE`` and switches it to WAL for good: done
    to a CA's ``ca.db`` named by mistake, both would outlast the refusal and change how
    that program's file is shared and journaled. So the check comes first, read-only (a
    ``mode=ro`` connection writes nothing, and in a file holding tables the check's
    ``CREATE TABLE IF NOT EXISTS`` finds its table or is never reached).
    """
    try:
        if os.stat(path).st_size == 0:
            return
    except FileNotFoundError:
        return
    conn = _read_only_connection(path, busy_timeout_ms)
    try:
        conn.execute("BEGIN")
        try:
            if conn.execute(_ANY_TABLE).fetchone() is not None:
                current_version(SqliteTransaction(conn), SQLITE)
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def _open_connection(path: str, busy_timeout_ms: int, *, reader: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,  # the store issues BEGIN/COMMIT itself
        check_same_thread=not reader,  # pooled readers move between threads, one at a time
    )
    try:
        conn.row_factory = _dict_row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or mode["journal_mode"] != "wal":
            raise StoreError(f"SQLite would not use WAL for {os.path.basename(path)}")
        conn.execute("PRAGMA synchronous = FULL")
        # Savepoints (one per operation of a group) keep their undo pages in a statement
        # journal: in memory, not in a temporary file (one interleaved run: ~30 us less CPU per
        # op, within the benchmark's run-to-run spread).
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA foreign_keys = ON")
        # No automatic checkpoint on any connection of the store: SQLite runs it inside the
        # COMMIT that crosses 1,000 WAL pages, making that group's callers wait for it. The
        # group-commit writer checkpoints instead, after answering them and as it closes
        # (``group_commit``); every write of the store (the sweeper's, prune-ledger's, the
        # CLI's) is its, but a migration's, which checkpoints itself (``_migrate``).
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        if reader:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _retrying_busy(
    opening: Callable[[], R],
    busy_timeout_ms: int,
    stopped: Callable[[], bool] | None = None,
) -> R:
    """``opening()``, tried again while SQLite answers BUSY or LOCKED, up to the timeout,
    or until ``stopped()`` says a stop was asked for (its last error raised then).

    Opening a WAL database while other processes open or close it (the gateway's workers
    start together) can meet SQLITE_BUSY that SQLite's busy handler never waited on (the
    shared-memory index being rebuilt by another process): one worker of two once failed
    to start that way in a full test run. Opening is rare; waiting a little is cheap.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            return opening()
        except sqlite3.Error as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
            if stopped is not None and stopped():
                raise
        time.sleep(OPEN_RETRY_PAUSE_SECONDS)


def _connect(path: str, busy_timeout_ms: int, *, reader: bool) -> sqlite3.Connection:
    """A configured connection (WAL, synchronous=FULL, ...), waiting out a busy open."""
    return _retrying_busy(
        lambda: _open_connection(path, busy_timeout_ms, reader=reader), busy_timeout_ms
    )


class SqliteLedgerStore(LedgerStore):
    """The ledger in one SQLite file, with group commit."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: SqliteStoreConfig | None = None,
        observer: CommitObserver | None = None,
        *,
        cpu: CpuTurn = PROCESS_TURN,
        read_only: bool = False,
        stopped: Callable[[], bool] | None = None,
    ) -> None:
        """Open (creating or migrating) the database at ``path`` and start the writer;
        ``cpu`` is the turn to compute its writer takes and lingers on (``group_commit``).
        ``read_only``: its reads alone, of a ledger at this code's schema version (the
        module docstring); StoreError for any write. ``stopped``: whether the process was
        asked to stop, asked as the opening waits out another's write lock, in tries of
        STOPPABLE_TRY_MS; once it says so, the opening gives up at once (StoreBusy: the
        ledger process, asked to stop as it opens a busy ledger, stops then, not after
        the busy timeout)."""
        self._path = os.fspath(path)
        self._config = config or SqliteStoreConfig()
        self._closed = False
        self._read_only = read_only
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        if read_only:
            self._open_readers(_read_only_connection)
            try:
                self.read(_require_this_version)
            except BaseException:
                self.close()
                raise
            return
        busy_ms = self._config.busy_timeout_ms
        try_ms = busy_ms if stopped is None else min(busy_ms, STOPPABLE_TRY_MS)
        try:
            _retrying_busy(
                lambda: _refuse_another_programs_file(self._path, try_ms), busy_ms, stopped
            )
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc
        try:
            _make_private(self._path)
        except OSError as exc:
            # As SQLite's own CANTOPEN is: the file's place is not there or not ours now
            # (a volume not mounted), which the operator mends and a retry then finds.
            raise StoreUnavailable(
                f"cannot create or narrow {os.path.basename(self._path)}: {exc.strerror}"
            ) from exc
        try:
            _retrying_busy(lambda: self._migrate(try_ms), busy_ms, stopped)
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc
        self._turn = WriteTurn(f"{self._path}.write-lock", self._config.busy_timeout_ms / 1000)
        try:
            self._writer = GroupCommitWriter(
                connect=lambda: _connect(self._path, self._config.busy_timeout_ms, reader=False),
                transaction=SqliteTransaction,
                translate=translate_error,
                config=self._config.group_commit,
                observer=observer,
                turn=self._turn.hold,
                cpu=cpu,
            )
        except BaseException:
            self._turn.close()
            raise
        self._open_readers(lambda path, busy_ms: _open_connection(path, busy_ms, reader=True))

    def _open_readers(self, connect: Callable[[str, int], sqlite3.Connection]) -> None:
        """Fill the pool of read connections, each opened by ``connect``."""
        busy_ms = self._config.busy_timeout_ms
        try:
            for _ in range(self._config.read_connections):
                self._readers.put(_retrying_busy(lambda: connect(self._path, busy_ms), busy_ms))
        except sqlite3.Error as exc:
            self.close()
            raise translate_error(exc) from exc

    def _migrate(self, busy_timeout_ms: int) -> None:
        """Create or migrate the schema, its BEGIN IMMEDIATE waiting ``busy_timeout_ms``
        for another's write lock."""
        conn = _connect(self._path, busy_timeout_ms, reader=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = migrate(SqliteTransaction(conn), SQLITE)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if found < SCHEMA_VERSION:
                # The migration's pages (a big ledger's new indexes) are copied back here:
                # the writer copies back only its own commits, and a close does only as
                # the file's last connection, which this is not while another process has
                # the file open. Outside the write turn (not open yet), a writer may append
                # meanwhile: PASSIVE then copies less, and never waits.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    def execute(self, work: Callable[[Transaction], R]) -> R:
        """Run ``work`` in the writer's next group; return once that group is committed."""
        return self._writable().submit(work)

    def submit(self, work: Callable[[Transaction], R], on_done: Completion[R]) -> None:
        """Queue ``work`` for the writer's next group and return at once; ``on_done`` gets
        its result or exception on the writer thread once that group is committed."""
        self._writable().submit_async(work, on_done)

    def _writable(self) -> GroupCommitWriter:
        if self._read_only:
            raise StoreError("the ledger store was opened read-only: it writes nothing")
        return self._writer

    def read(self, query: Callable[[Transaction], R]) -> R:
        """Run ``query`` in one snapshot on a pooled read connection."""
        if self._closed:
            raise StoreUnavailable("the ledger store is closed")
        try:
            conn = self._readers.get(timeout=self._config.read_wait_seconds)
        except queue.Empty as exc:
            raise StoreUnavailable("no ledger read connection came free") from exc
        try:
            conn.execute("BEGIN")
            try:
                return query(SqliteTransaction(conn))
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc
        finally:
            self._readers.put(conn)

    def close(self) -> None:
        """Commit what is queued, stop the writer, close every connection."""
        if self._closed:
            return
        self._closed = True
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()
        turn = getattr(self, "_turn", None)
        if turn is not None:
            turn.close()
        readers = getattr(self, "_readers", None)
        while readers is not None:
            try:
                readers.get_nowait().close()
            except queue.Empty:
                break
