"""The PostgreSQL ledger store: one database shared by several gateway hosts.

- Each operation is one READ COMMITTED transaction that locks the rows it decides on
  (``SELECT ... FOR NO KEY UPDATE``, in the order ``store`` documents); balances change through
  atomic ``x = x + ?`` updates. Two hosts racing for one card serialize on its row.
- Durability: every transaction runs with ``synchronous_commit = on``, whatever the
  server's or the role's default, so a commit has reached the WAL on disk before the call
  returns. It is set in each transaction (``SET LOCAL``), as are the statement timeout and
  the isolation level (in ``BEGIN``), never once per session: behind a pooler in
  transaction mode (PgBouncer) the next transaction may run on another server session.
  Nor is a statement prepared on the server (psycopg's ``prepare_threshold``, five runs
  by default): that session would lack it (SQLSTATE 26000) or hold another client's of
  its name (42P05), and the operation fail. ``PostgresStoreConfig`` may opt in, unpooled.
  Grouping is left to PostgreSQL (``commit_delay`` on the server, if wanted).
- Serialization failures, deadlocks and unique-key races (two hosts inserting the same
  RRPID, XID or batch at once) roll back and retry the whole operation; the retry sees
  the winner's row and answers accordingly (a stored response, PiPreviouslyUsed, ...).
  A repeated hold id is not such a race but the caller's error: it fails at once.
- Reads run in REPEATABLE READ, READ ONLY transactions: one snapshot per read.
- The schema is migrated when the store opens, one transaction per schema version, each
  giving way to the transactions holding a table it must lock (``postgres_migration``);
  opened ``read_only`` (an audit), the store migrates nothing, refuses a schema not
  current, and serves its reads alone.
- Connections come from a small bounded pool; broken ones, and any an outage was met on,
  are dropped and replaced, and with them every idle one (they lead to the same server).
  A transaction whose ``BEGIN`` fails on a connection that idled in the pool, as every
  idle one does after the server restarted, is begun once more on a new connection:
  nothing of it had reached the server.
- A server that goes silent resets nothing: its host died, a failover left its address
  dead, the network parted. Each connection asks the kernel to give it up once data sent
  on it stays unacknowledged ``TCP_USER_TIMEOUT_MS``, or once the line, quiet, stops
  answering keepalive probes (``KEEPALIVE_*``): without them a statement sent on it waits
  for the kernel's own retransmissions to end, some fifteen minutes, with its pool slot,
  and a pool of such connections stops the bank that long. A connection string that
  sets one of these (``keepalives_idle=...``) keeps its own; one set in a service file
  (``service=``, ``PGSERVICE``) does not, the store's overriding it: put it in the
  string itself. (TCP only: a Unix socket never goes silent this way.)
- A caller holding its worker's turn to compute (``gateway.cpu_turn``) gives it up for the
  whole operation: the round trips to the server (and the wait for a pooled connection)
  must not stop the worker's other requests from computing.

psycopg exceptions are translated here, once, naming the SQLSTATE and constraint but never
a value (PostgreSQL's error detail would quote the key). What an error means is decided
by its SQLSTATE, as ``gateway.sqlite_errors`` decides it for SQLite, so that one fault is
answered alike whichever database the bank runs on:

    StoreUnavailable  the database cannot be used now, whatever the statement: the
                      connection (class 08), resources (53: disk full, out of memory,
                      too many connections), a lock or statement timeout (55P03, 57014),
                      the server shutting down, crashed or starting (57P01..57P03), a
                      system or I/O error (58), serialization failures and deadlocks
                      past ``MAX_ATTEMPTS`` (40), a read-only transaction (25006: the
                      server is a hot standby, as after a failover), a session ended by
                      the server's idle-in-transaction timeout (25P03), and damaged data
                      or a damaged index (XX001, XX002). Answered UNAVAILABLE: the
                      requester sends the same request again. Nothing was decided,
                      except when the connection was lost with COMMIT in flight:
                      then the outcome is unknown (the server may have committed), and
                      the request sent again with the same RRPID is answered from
                      what was committed (``idempotency``), never decided twice.
                      A connection the server refuses (a wrong password, an unknown
                      role or database, no server there) is an outage too: its
                      message says why, as libpq does, unless that would quote a
                      password, and the log says it at WARNING, each reason at once
                      and then once a minute while it lasts (``postgres_refusals``).
    StoreAway         of those, the server away, a fault that passes by itself: a
                      connection lost or refused (class 08 but for a protocol violation,
                      08P01, and the server rejecting the connection, 08004: a pooler
                      or proxy not speaking as we do, the same at every try; or
                      psycopg's OperationalError with no SQLSTATE: the server closed it
                      or stopped answering, but for "the connection is closed", one
                      closed on this side), the server shutting down, crashed or
                      starting (57P01..57P03), and a connection libpq could not open
                      for such a reason (``postgres_refusals.server_away``).
    StoreBusy         of those, every connection slot taken (53300, too many clients),
                      a fault that passes too: the ledger is shared by any number of
                      gateway hosts, whose peaks of connections come and go, the server
                      there and answering (so not StoreAway), and a lock not available
                      (55P03: another session's, past lock_timeout). Damaged data, a full disk,
                      a refused password or a missing database are neither: they last
                      until the operator mends them, and a worker's replacement meeting
                      one stops the bank (``gateway.child``).
    StoreError        anything else: a constraint, the statement itself wrong (42),
                      over one of PostgreSQL's program limits (54), or asking of an object
                      a state it is not in (55000, 55P02, 55P04): the same every time,
                      answered with a signed SET Error.

Damaged data is an outage, not a failure, for the reason ``gateway.sqlite_errors``
gives: the statement that met it decided nothing, only the operator can mend it, and a
signed Error would be recorded by the merchant as the bank's final refusal. After an
outage the connection is dropped, not pooled again, and so is every idle one: the next
operation connects afresh, and so follows a failover that moved the server's name to the
new primary.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from gateway.cpu_turn import PROCESS_TURN
from gateway.ledger.errors import StoreAway, StoreBusy, StoreError, StoreUnavailable
from gateway.ledger.postgres_migration import migrate_schema, require_current
from gateway.ledger.postgres_refusals import RefusalLog, connect_refused, connect_secrets
from gateway.ledger.store import CommitObserver, CommitStats, LedgerStore, Row, Transaction

R = TypeVar("R")

# Connections per process: each gateway worker thread holds one for a single short
# transaction; more connections than cores mostly adds lock contention on hot accounts.
POOL_SIZE = 8
# How long an operation waits for a pooled connection before StoreUnavailable.
POOL_WAIT_SECONDS = 10.0
# How long to wait for the server when opening a connection.
CONNECT_TIMEOUT_SECONDS = 10
# How long data sent on a connection may stay unacknowledged before the kernel gives the
# connection up (the module docstring): the connect timeout's length. A live server's
# kernel acknowledges at once, however long the statement runs. Only a server process
# that stops reading (stopped, or swamped) while a statement larger than the sockets'
# buffers is still being sent leaves data unacknowledged that long: the ledger's
# statements are small and it streams nothing (no COPY), so none of its waits is cut.
TCP_USER_TIMEOUT_MS = 10_000
# A quiet connection (idle in the pool, or waiting for a long statement) is probed after
# this many seconds, then every KEEPALIVE_INTERVAL_SECONDS, and given up after
# KEEPALIVE_COUNT probes unanswered: a dead server is found within 25 s, before the
# statement timeout, and an idle connection to it before it is used. On Linux sooner,
# about 15 s after the server last answered (idle, then one interval): there a probe
# unanswered once TCP_USER_TIMEOUT_MS has passed ends the connection, whatever the count.
KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3
# libpq's parameters for the two above, each given unless the connection string sets it.
_LIVENESS = {
    "keepalives": "1",
    "keepalives_idle": str(KEEPALIVE_IDLE_SECONDS),
    "keepalives_interval": str(KEEPALIVE_INTERVAL_SECONDS),
    "keepalives_count": str(KEEPALIVE_COUNT),
    "tcp_user_timeout": str(TCP_USER_TIMEOUT_MS),
}
# A statement (including a lock wait) running longer than this is cancelled: something
# is wedged, and the caller's retry with the same RRPID is safe.
STATEMENT_TIMEOUT_MS = 30_000
# Attempts of one operation through serialization failures, deadlocks and key races;
# each retry sees the rows that beat it, so more than a few means something is wrong.
MAX_ATTEMPTS = 8
# Upper bound of the random pause before a retry, so racing hosts fall out of step.
RETRY_PAUSE_SECONDS = 0.005

_RETRYABLE = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.UniqueViolation,
)
# Unique keys whose violation no retry can cure. A hold id is the caller's (``Ledger``
# mints it, or the gateway does with ``new_hold_id``, once per request): a repeat is a
# mistake in the caller, not a race with another host. Every other unique key (the
# RRPID, the XID, the open batch, an account's PAN or merchant id) may be raced by two
# hosts at once, and there the retry finds the winner's row.
_CALLERS_KEYS = frozenset({"holds_pkey"})


def _retryable(exc: psycopg.Error) -> bool:
    """Whether another attempt of the operation may succeed where ``exc`` stopped it."""
    if not isinstance(exc, _RETRYABLE):
        return False
    if isinstance(exc, pg_errors.UniqueViolation) and exc.diag is not None:
        return exc.diag.constraint_name not in _CALLERS_KEYS
    return True


@dataclass(frozen=True)
class PostgresStoreConfig:
    """Limits of the PostgreSQL store (the module constants by default)."""

    pool_size: int = POOL_SIZE
    pool_wait_seconds: float = POOL_WAIT_SECONDS
    connect_timeout_seconds: int = CONNECT_TIMEOUT_SECONDS
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
    max_attempts: int = MAX_ATTEMPTS
    prepare_threshold: int | None = None  # psycopg's; None prepares none (module docstring)


# SQLSTATEs of a database that cannot be used now that psycopg does not class as an
# OperationalError (it classes 25 and XX as InternalError); the module docstring says why.
_OUTAGE_SQLSTATES = frozenset({"25006", "25P03", "XX001", "XX002"})
# SQLSTATE classes psycopg calls OperationalError that are the statement's own fault, the
# same on every try: program limits (54) such as too many arguments or columns.
_STATEMENT_CLASSES = frozenset({"54"})
# Class 55 SQLSTATEs (psycopg's OperationalError too) that are the program's or the
# schema's bug, the same on every try: an object not in the state the statement needs
# (55000: say, currval before nextval), a setting only the server's start may change
# (55P02), an enum value used in the transaction that added it (55P04). The standby's
# 55000s (WAL control functions, strong locks during recovery) come from statements the
# ledger never makes: its writes there fail first as 25006. The rest of class 55 is the
# database's state, not the statement: a lock not available (55P03), an object in use by
# other sessions (55006).
_STATEMENT_SQLSTATES = frozenset({"55000", "55P02", "55P04"})
# The server away (``StoreAway``), every slot taken or a lock held (``StoreBusy``), and
# what psycopg says with no SQLSTATE of a connection closed on this side: the module
# docstring.
_AWAY_CLASSES = frozenset({"08"})
_AWAY_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
_LASTING_CONNECTION_SQLSTATES = frozenset({"08P01", "08004"})
_BUSY_SQLSTATES = frozenset({"53300", "55P03"})
_CLOSED_HERE = "the connection is closed"
# Read-only transaction (25006): in a READ ONLY snapshot of our own it is a write the
# query should not make, a bug; anywhere else the server refuses writes (hot standby).
_READ_ONLY_TRANSACTION = "25006"


def is_outage(exc: psycopg.Error, *, read_only: bool = False) -> bool:
    """Whether ``exc`` says the database cannot be used now (the module docstring);
    ``read_only``: raised inside a READ ONLY transaction the store itself opened."""
    sqlstate = exc.sqlstate or ""
    if sqlstate == _READ_ONLY_TRANSACTION:
        return not read_only
    if sqlstate in _OUTAGE_SQLSTATES:
        return True
    if sqlstate[:2] in _STATEMENT_CLASSES or sqlstate in _STATEMENT_SQLSTATES:
        return False
    return isinstance(exc, psycopg.OperationalError)


def is_away(exc: psycopg.Error) -> bool:
    """Whether ``exc``, an outage, says the server is away (the module docstring): its
    SQLSTATE, or an OperationalError with none (the connection lost, not answering) but
    for one closed on this side."""
    sqlstate = exc.sqlstate or ""
    if not sqlstate:
        return isinstance(exc, psycopg.OperationalError) and str(exc) != _CLOSED_HERE
    if sqlstate in _LASTING_CONNECTION_SQLSTATES:
        return False
    return sqlstate[:2] in _AWAY_CLASSES or sqlstate in _AWAY_SQLSTATES


def _outage_kind(exc: psycopg.Error) -> type[StoreUnavailable]:
    """The StoreUnavailable class of ``exc``, an outage: away, busy, or lasting."""
    if is_away(exc):
        return StoreAway
    return StoreBusy if exc.sqlstate in _BUSY_SQLSTATES else StoreUnavailable


def translate_error(exc: psycopg.Error, *, read_only: bool = False) -> StoreError:
    """The ledger's error for a psycopg one (SQLSTATE and constraint, never values)."""
    constraint = exc.diag.constraint_name if exc.diag is not None else None
    what = f"{type(exc).__name__}, SQLSTATE {exc.sqlstate or 'none'}"
    if constraint:
        what += f", constraint {constraint}"
    error: StoreError
    if is_outage(exc, read_only=read_only):
        error = _outage_kind(exc)(f"PostgreSQL is unavailable ({what})")
    else:
        error = StoreError(f"PostgreSQL failed ({what})")
    error.__cause__ = exc
    return error


@functools.lru_cache(maxsize=1024)
def _format_style(sql: str) -> str:
    """The rules' ``?`` placeholders as psycopg's ``%s`` (their SQL has no literal ? or %)."""
    if "%" in sql:
        raise ValueError("ledger SQL must not contain '%'")
    return sql.replace("?", "%s")


class PostgresTransaction(Transaction):
    """The ledger rules' view of an open PostgreSQL transaction."""

    # NO KEY UPDATE, not UPDATE: the ledger never changes a locked row's key, and a plain
    # FOR UPDATE would also conflict with the KEY SHARE locks that other transactions'
    # foreign-key checks take on the same account (inserting a hold or transfer that
    # references it), turning ordinary contention into deadlocks.
    row_lock = " FOR NO KEY UPDATE"

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        """Wrap a connection that is inside a transaction."""
        self._conn = conn

    def one(self, sql: str, *params: object) -> Row | None:
        """The first row of a query, or None."""
        return self._conn.execute(_format_style(sql), params).fetchone()

    def all(self, sql: str, *params: object) -> list[Row]:
        """Every row of a query."""
        return list(self._conn.execute(_format_style(sql), params).fetchall())

    def run(self, sql: str, *params: object) -> int:
        """Execute a statement; return the number of rows it changed."""
        return self._conn.execute(_format_style(sql), params).rowcount


class _Pool:
    """A bounded pool of autocommit connections, each transaction begun here."""

    def __init__(
        self, connect: Callable[[], psycopg.Connection[dict[str, Any]]], config: PostgresStoreConfig
    ) -> None:
        self._connect = connect
        self._wait = config.pool_wait_seconds
        self._permits = threading.BoundedSemaphore(config.pool_size)
        self._idle: queue.LifoQueue[psycopg.Connection[dict[str, Any]]] = queue.LifoQueue()
        # Set in each transaction, never for the session (the module docstring): one
        # statement, one round trip, ~15 us on a local socket against the commit's WAL flush.
        self._settings = (
            "SELECT set_config('synchronous_commit', 'on', true),"
            f" set_config('statement_timeout', '{int(config.statement_timeout_ms)}', true)"
        )

    @contextlib.contextmanager
    def transaction(
        self, *, read_only: bool = False
    ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection inside a transaction of its own, committed when the block ends
        (rolled back if it raises); ``read_only``: a REPEATABLE READ, READ ONLY snapshot."""
        if not self._permits.acquire(timeout=self._wait):
            raise StoreUnavailable("no ledger database connection came free")
        conn: psycopg.Connection[dict[str, Any]] | None = None
        try:
            try:
                conn, reused = self._idle.get_nowait(), True
            except queue.Empty:
                conn, reused = self._connect(), False
            try:
                begun = self._begin(conn, read_only)
            except psycopg.Error as exc:
                if not (reused and is_outage(exc, read_only=read_only)):
                    raise
                # The server went away while this connection idled here (a restart, a
                # failover): it fails at BEGIN, before anything of the transaction was
                # sent, so nothing can have been decided and one more try is safe. It
                # goes to a new connection, and the other idle ones go too: they lead to
                # the same server. Only once: a server still down fails the new one.
                conn.close()
                self.close_idle()
                conn = self._connect()
                begun = self._begin(conn, read_only)
            with begun:
                yield conn
        except psycopg.Error as exc:
            # Retried races keep their connection; after an outage it may be bound to a
            # server that can no longer serve (a demoted primary), and so may every idle
            # one: start afresh.
            if conn is not None and not _retryable(exc) and is_outage(exc, read_only=read_only):
                conn.close()
                self.close_idle()
            raise
        finally:
            if conn is not None:
                if conn.closed or conn.broken:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._permits.release()

    def _begin(
        self, conn: psycopg.Connection[dict[str, Any]], read_only: bool
    ) -> contextlib.ExitStack:
        """Begin a transaction on ``conn``; closing the stack returned ends it."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(conn.transaction())
            if read_only:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(self._settings)
            return stack.pop_all()

    def close_idle(self) -> None:
        """Close every idle connection (those in use are closed or kept when returned)."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class PostgresLedgerStore(LedgerStore):
    """The ledger in a PostgreSQL database, shared by any number of gateway hosts."""

    def __init__(
        self,
        conninfo: str,
        config: PostgresStoreConfig | None = None,
        observer: CommitObserver | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        """Connect to ``conninfo`` (a libpq connection string) and migrate the schema;
        ``read_only``: migrate nothing, refuse (SchemaError) a schema not at this code's
        version or no ledger at all, and serve reads alone (StoreError for a write)."""
        self._conninfo = conninfo
        self._config = config or PostgresStoreConfig()
        self._observer = observer
        self._closed = False
        self._read_only = read_only
        self._refusals = RefusalLog()
        self._pool = _Pool(self._connect, self._config)
        try:
            if read_only:
                require_current(self._pool.transaction)
            else:
                migrate_schema(self._pool.transaction, PostgresTransaction)
        except psycopg.Error as exc:
            self._pool.close_idle()
            raise translate_error(exc) from exc
        except BaseException:
            self._pool.close_idle()
            raise

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            given = conninfo_to_dict(self._conninfo)
        except psycopg.Error as exc:  # not a connection string: nothing of it is quoted
            raise translate_error(exc) from exc
        # Those the connection string leaves out (the module docstring): merged in, they
        # would override the string's own.
        liveness = {k: v for k, v in _LIVENESS.items() if k not in given}
        try:
            conn = psycopg.connect(
                make_conninfo(self._conninfo, **liveness),
                autocommit=True,  # every transaction is an explicit conn.transaction()
                row_factory=dict_row,
                connect_timeout=self._config.connect_timeout_seconds,
                prepare_threshold=self._config.prepare_threshold,
            )
        except psycopg.OperationalError as exc:
            refused = connect_refused(exc, connect_secrets(self._conninfo, exc))
            self._refusals.refused(refused, exc)
            raise refused from exc
        except psycopg.Error as exc:
            raise translate_error(exc) from exc
        self._refusals.connected()
        # In each BEGIN, not SET for the session: the module docstring.
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        return conn

    def execute(self, work: Callable[[Transaction], R]) -> R:
        """Run ``work`` in one committed transaction, retrying races; return its result."""
        self._check_open()
        if self._read_only:
            raise StoreError("the ledger store was opened read-only: it writes nothing")
        with PROCESS_TURN.aside():
            return self._execute(work)

    def _execute(self, work: Callable[[Transaction], R]) -> R:
        last: psycopg.Error | None = None
        for attempt in range(self._config.max_attempts):
            if attempt:
                time.sleep(random.uniform(0, RETRY_PAUSE_SECONDS))  # noqa: S311  jitter, not a secret
            try:
                with self._pool.transaction() as conn:
                    started = time.perf_counter()
                    result = work(PostgresTransaction(conn))
                elapsed = time.perf_counter() - started
                self._notify(CommitStats(seconds=elapsed, operations=1, retries=attempt))
                return result
            except psycopg.Error as exc:
                if not _retryable(exc):
                    raise translate_error(exc) from exc
                last = exc
        if last is None:
            raise StoreError(f"max_attempts is {self._config.max_attempts}: nothing was tried")
        raise translate_error(last) from last

    def read(self, query: Callable[[Transaction], R]) -> R:
        """Run ``query`` in one REPEATABLE READ, READ ONLY snapshot."""
        self._check_open()
        try:
            with PROCESS_TURN.aside(), self._pool.transaction(read_only=True) as conn:
                return query(PostgresTransaction(conn))
        except psycopg.Error as exc:
            raise translate_error(exc, read_only=True) from exc

    def close(self) -> None:
        """Close the pooled connections; later calls raise StoreUnavailable."""
        self._closed = True
        self._pool.close_idle()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the ledger store is closed")

    def _notify(self, stats: CommitStats) -> None:
        if self._observer is None:
            return
        # A metrics hook must never stop the ledger.
        with contextlib.suppress(Exception):
            self._observer(stats)
