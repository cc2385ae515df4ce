"""A commit that fails: every waiter is told, none is answered as done, nothing is kept.

Real faults where the machine allows them: a file size limit (``RLIMIT_FSIZE``, in a child
process) stops the WAL from growing at COMMIT as a full disk does; a deferred foreign key
refuses the COMMIT itself; another connection holding SQLite's write lock makes BEGIN
busy; a PostgreSQL backend is terminated under an operation; PostgreSQL raises a real
serialization failure on every attempt. A write turn that fails with an error of the
operating system is a test double.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import resource
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

import psycopg
import pytest

from gateway.ledger import (
    CommitStats,
    GroupCommitConfig,
    PostgresLedgerStore,
    PostgresStoreConfig,
    SqliteLedgerStore,
    SqliteStoreConfig,
    StoreUnavailable,
)
from gateway.ledger import sqlite as sqlite_store
from gateway.ledger.store import Transaction
from gateway.ledger.write_lock import WriteTurn
from tests.gateway.ledger.ledger_support import PgCluster, insert_probe, probe_values

# Operations queued behind the held writer, so that they share its group.
QUEUED = 8
# What each queued operation writes: together far more than the file size limit leaves.
BODY_BYTES = 64 * 1024
# Room left in the WAL file for the group that meets the full disk: less than one body.
ROOM_BYTES = 4096
# How long a test waits for a caller to be told: far beyond what a loaded machine needs,
# so that only a writer that leaves its callers unanswered ever reaches it.
ANSWER_WAIT_SECONDS = 60.0

_Outcome = tuple[object, str | None, str]
"""What one caller got: its result, the name of its error's type, the error's message."""


def _outcome(result: object, error: BaseException | None) -> _Outcome:
    return result, None if error is None else type(error).__name__, str(error or "")


class _HeldWriter:
    """A store whose writer is held inside its first operation, so that what is queued
    meanwhile commits in that operation's group once ``release`` is called."""

    def __init__(self, store: SqliteLedgerStore) -> None:
        self.store = store
        self._entered = threading.Event()
        self._release = threading.Event()
        self.outcomes: dict[int, _Outcome] = {}
        self._answered = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.first: Future[None] = self._pool.submit(store.execute, self._hold)
        self._entered.wait()

    def _hold(self, tx: Transaction) -> None:
        self._entered.set()
        self._release.wait()

    def submit(self, key: int, work: Callable[[Transaction], object]) -> None:
        """Queue ``work`` without waiting (as the ledger service does)."""

        def answered(result: object, error: BaseException | None) -> None:
            with self._answered:
                self.outcomes[key] = _outcome(result, error)
                self._answered.notify_all()

        self.store.submit(work, answered)

    def queued(self) -> int:
        return self.store._writer._queue.qsize()

    def release(self, expected: int) -> dict[int, _Outcome]:
        """Let the group go on; every answer once ``expected`` have come."""
        self._release.set()
        self.first.exception(timeout=ANSWER_WAIT_SECONDS)
        with self._answered:
            told = self._answered.wait_for(
                lambda: len(self.outcomes) >= expected, timeout=ANSWER_WAIT_SECONDS
            )
        assert told, f"{expected - len(self.outcomes)} caller(s) never told"
        self._pool.shutdown()
        return dict(self.outcomes)


def _create_bodies(tx: Transaction) -> None:
    tx.run("CREATE TABLE body (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")


def _insert_body(key: int) -> Callable[[Transaction], int]:
    def work(tx: Transaction) -> int:
        tx.run("INSERT INTO body (id, data) VALUES (?, ?)", key, os.urandom(BODY_BYTES))
        return key

    return work


def _fails_alone(tx: Transaction) -> None:
    tx.run("INSERT INTO body (id, data) VALUES (?, ?)", 999, b"x")
    raise RuntimeError("this operation fails by itself")


def _bodies(store: SqliteLedgerStore) -> list[int]:
    return [int(r["id"]) for r in store.read(lambda tx: tx.all("SELECT id FROM body ORDER BY id"))]


def _group_meets_a_full_disk(path: str, report: Connection) -> None:
    """In a child process: a group whose COMMIT cannot grow the WAL file; report what
    each caller got, what was kept, what the observer saw, and that the writer goes on."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    commits: list[CommitStats] = []
    config = SqliteStoreConfig(group_commit=GroupCommitConfig(window_seconds=60))
    store = SqliteLedgerStore(path, config=config, observer=commits.append)
    try:
        store.execute(_create_bodies)
        held = _HeldWriter(store)
        for key in range(QUEUED):
            held.submit(key, _insert_body(key))
        held.submit(QUEUED, _fails_alone)
        while held.queued() < QUEUED + 1:
            threading.Event().wait(0.001)
        commits.clear()
        wal = os.path.getsize(path + "-wal")
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (wal + ROOM_BYTES, hard))
        try:
            outcomes = held.release(QUEUED + 1)
            first = _outcome(None, held.first.exception())
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        seen = list(commits)
        kept = _bodies(store)
        again = store.execute(_insert_body(0))  # the disk has room again: the writer goes on
        report.send((first, outcomes, kept, seen, again, _bodies(store)))
    finally:
        store.close()


def test_a_group_that_meets_a_full_disk_fails_every_caller_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=_group_meets_a_full_disk, args=(str(tmp_path / "ledger.db"), sending)
    )
    child.start()
    sending.close()
    try:
        first, outcomes, kept, commits, again, after = receiving.recv()
    finally:
        child.join()
    assert child.exitcode == 0
    # Every caller of the group is told, the one that failed by itself as well: its
    # failure was decided against a state that never came to be.
    for result, error, message in [first, *outcomes.values()]:
        assert result is None
        assert error == "StoreUnavailable"
        assert "could not be committed" in message
    assert sorted(outcomes) == list(range(QUEUED + 1))
    assert kept == []
    assert commits == []  # the commit metrics count durable commits only
    assert again == 0 and after == [0]


class _ObservedStore(SqliteLedgerStore):
    """A SQLite store that keeps every commit its writer reports."""

    def __init__(self, path: Path) -> None:
        self.commits: list[CommitStats] = []
        # The busy timeout is short (100 ms) for the test of a busy database.
        config = SqliteStoreConfig(
            group_commit=GroupCommitConfig(window_seconds=60), busy_timeout_ms=100
        )
        super().__init__(path, config=config, observer=self.commits.append)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[_ObservedStore]:
    opened = _ObservedStore(tmp_path / "ledger.db")
    opened.execute(_create_bodies)
    opened.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL UNIQUE)"))
    opened.commits.clear()
    yield opened
    opened.close()


def test_a_commit_refused_by_the_database_fails_every_caller_and_keeps_nothing(
    store: _ObservedStore, tmp_path: Path
) -> None:
    # A deferred foreign key is checked at COMMIT: the COMMIT itself fails and leaves the
    # transaction open, so the writer must roll it back before the next group.
    store.execute(
        lambda tx: tx.run(
            "CREATE TABLE child (parent INTEGER REFERENCES body (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    )
    store.commits.clear()
    held = _HeldWriter(store)
    for key in range(QUEUED):
        held.submit(key, insert_probe(key))
    held.submit(QUEUED, lambda tx: tx.run("INSERT INTO child (parent) VALUES (?)", 12345))
    while held.queued() < QUEUED + 1:
        threading.Event().wait(0.001)
    outcomes = held.release(QUEUED + 1)
    first = _outcome(None, held.first.exception())
    for result, error, message in [first, *outcomes.values()]:
        assert (result, error) == (None, "StoreUnavailable")
        assert "could not be committed" in message
    assert probe_values(tmp_path / "ledger.db") == []
    assert store.commits == []
    # Rolled back: the next group begins and commits.
    assert store.execute(insert_probe(1)) == 1
    assert probe_values(tmp_path / "ledger.db") == [1]
    assert [c.operations for c in store.commits] == [1]


def test_a_busy_database_fails_the_group_and_the_writer_goes_on(
    store: _ObservedStore, tmp_path: Path
) -> None:
    # Another connection holds SQLite's write lock without taking the write turn: BEGIN
    # IMMEDIATE waits out the busy timeout (100 ms here) and fails.
    other = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="could not be committed") as raised:
            store.execute(insert_probe(1))
        assert "SQLITE_BUSY" in str(raised.value.__cause__.sqlite_errorname)  # type: ignore[union-attr]
        assert _bodies(store) == []  # reads go on beside the held lock (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.execute(insert_probe(2)) == 2
    assert probe_values(tmp_path / "ledger.db") == [2]
    assert [c.operations for c in store.commits] == [1]


class _TurnThatFails(WriteTurn):
    """The write turn, failing once with an error of the operating system when armed."""

    failure: OSError | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        failure, _TurnThatFails.failure = _TurnThatFails.failure, None
        if failure is not None:
            raise failure
        with super().hold():
            yield


def test_a_write_turn_that_fails_fails_its_group_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "WriteTurn", _TurnThatFails)
    monkeypatch.setattr(_TurnThatFails, "failure", None)
    path = tmp_path / "ledger.db"
    store = SqliteLedgerStore(path)
    try:
        store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL UNIQUE)"))
        _TurnThatFails.failure = OSError(errno.ENOLCK, "No locks available")
        with pytest.raises(StoreUnavailable, match="could not be committed"):
            store.execute(insert_probe(1))
        # A caller that does not wait (the ledger service) is told too.
        _TurnThatFails.failure = OSError(errno.ENOLCK, "No locks available")
        told: list[_Outcome] = []
        answered = threading.Event()

        def completion(result: object, error: BaseException | None) -> None:
            told.append(_outcome(result, error))
            answered.set()

        store.submit(insert_probe(2), completion)
        assert answered.wait(ANSWER_WAIT_SECONDS)
        assert told == [(None, "StoreUnavailable", "the ledger transaction could not be committed")]
        # The writer is alive and the store open.
        assert store.execute(insert_probe(3)) == 3
        assert probe_values(path) == [3]
    finally:
        store.close()


def test_an_operation_error_is_its_callers_alone(store: _ObservedStore, tmp_path: Path) -> None:
    # A rule's error, a constraint, a failing statement: each fails its own caller only.
    held = _HeldWriter(store)
    held.submit(0, insert_probe(0))
    held.submit(1, insert_probe(0))  # UNIQUE: a StoreError of its own
    held.submit(2, lambda tx: tx.run("INSERT INTO nowhere (value) VALUES (1)"))
    held.submit(3, _fails_alone)
    held.submit(4, insert_probe(4))
    while held.queued() < 5:
        threading.Event().wait(0.001)
    outcomes = held.release(5)
    assert outcomes[0] == (0, None, "")
    assert outcomes[1][:2] == (None, "StoreError") and "UNIQUE" in outcomes[1][2]
    assert outcomes[2][:2] == (None, "StoreError")
    assert outcomes[3] == (None, "RuntimeError", "this operation fails by itself")
    assert outcomes[4] == (4, None, "")
    assert probe_values(tmp_path / "ledger.db") == [0, 4]
    assert _bodies(store) == []  # what the failing one wrote before it raised is undone
    assert [c.operations for c in store.commits] == [6]


def test_the_writer_connection_is_durable(store: _ObservedStore) -> None:
    # WAL with synchronous=FULL (2): each commit is on disk before it returns.
    def pragmas(tx: Transaction) -> tuple[object, object]:
        mode, sync = tx.one("PRAGMA journal_mode"), tx.one("PRAGMA synchronous")
        assert mode is not None and sync is not None
        return mode["journal_mode"], sync["synchronous"]

    assert store.execute(pragmas) == ("wal", 2)
    assert store.read(pragmas) == ("wal", 2)


# -- PostgreSQL: a connection lost, a conflict that never clears

# How long pg_terminate_backend waits for the backend to be gone (it returns at once then).
TERMINATE_WAIT_MS = 30_000


def _create_probe(tx: Transaction) -> None:
    tx.run("CREATE TABLE probe (value INTEGER NOT NULL UNIQUE)")


def _pg_probe_values(store: PostgresLedgerStore) -> list[int]:
    rows = store.read(lambda tx: tx.all("SELECT value FROM probe ORDER BY value"))
    return [int(r["value"]) for r in rows]


@pytest.mark.parametrize("cut", ["mid-operation", "killed-before-commit"])
def test_a_postgres_connection_lost_commits_nothing_and_is_replaced(
    pg_cluster: PgCluster, cut: str
) -> None:
    conninfo = pg_cluster.new_schema()
    commits: list[CommitStats] = []
    store = PostgresLedgerStore(conninfo, observer=commits.append)
    try:
        store.execute(_create_probe)
        commits.clear()

        def cut_off(tx: Transaction) -> int:
            tx.run("INSERT INTO probe (value) VALUES (?)", 1)
            row = tx.one("SELECT pg_backend_pid() AS pid")
            assert row is not None
            with psycopg.connect(conninfo, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(%s, %s)", (row["pid"], TERMINATE_WAIT_MS)
                )
            if cut == "mid-operation":
                tx.run("INSERT INTO probe (value) VALUES (?)", 2)
            # Else COMMIT, sent only after the backend is gone, meets the lost connection;
            # an answer to COMMIT lost after the server got it: test_ledger_pg_commit_lost.
            return 1

        with pytest.raises(StoreUnavailable, match="PostgreSQL is unavailable"):
            store.execute(cut_off)
        assert commits == []
        assert _pg_probe_values(store) == []
        # The broken connection left the pool; the next operation gets a new one.
        assert store.execute(insert_probe(3)) == 3
        assert _pg_probe_values(store) == [3]
        assert [c.operations for c in commits] == [1]
    finally:
        store.close()


def test_postgres_retries_a_serialization_failure_a_bounded_number_of_times(
    pg_cluster: PgCluster,
) -> None:
    store = PostgresLedgerStore(pg_cluster.new_schema(), PostgresStoreConfig(max_attempts=3))
    attempts: list[int] = []

    def never_serializable(tx: Transaction) -> None:
        attempts.append(len(attempts) + 1)
        tx.run(
            "INSERT INTO requests (rrpid, request_digest, response, created_at_ms)"
            " VALUES (?, ?, ?, ?)",
            b"r",
            b"d",
            b"a",
            1,
        )
        tx.run(
            "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$"
        )

    try:
        with pytest.raises(StoreUnavailable, match="SerializationFailure"):
            store.execute(never_serializable)
        assert attempts == [1, 2, 3]
        # Every attempt was rolled back.
        assert store.read(lambda tx: tx.one("SELECT count(*) AS n FROM requests")) == {"n": 0}
    finally:
        store.close()
