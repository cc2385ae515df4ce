"""Processes sharing one SQLite ledger: the write turn (``gateway.ledger.write_lock``) and
opening the file while others open it."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.ledger import (
    GroupCommitConfig,
    SqliteLedgerStore,
    SqliteStoreConfig,
    StoreUnavailable,
    write_lock,
)
from gateway.ledger import sqlite as sqlite_store
from gateway.ledger.write_lock import WriteTurn


@contextmanager
def held_elsewhere(path: Path) -> Iterator[None]:
    """The lock held on another open file description, as another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class HolderThread:
    """A thread that holds the lock elsewhere (``held_elsewhere``) until ``release``."""

    def __init__(self, path: Path) -> None:
        self._release = threading.Event()
        holding = threading.Event()

        def hold() -> None:
            with held_elsewhere(path):
                holding.set()
                self._release.wait()

        self._thread = threading.Thread(target=hold)
        self._thread.start()
        holding.wait()

    def release(self) -> None:
        """Let go of the lock and wait until the thread has."""
        self._release.set()
        self._thread.join()


def test_the_lock_file_is_private_and_empty(tmp_path: Path) -> None:
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    try:
        store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER)"))
        lock = tmp_path / "ledger.db.write-lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.stat().st_size == 0
    finally:
        store.close()


def test_a_waiter_waits_while_the_turn_is_held_elsewhere_and_gets_it_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "turn"
    turn = WriteTurn(str(path), timeout_seconds=30.0)
    got = threading.Event()
    holder = HolderThread(path)

    def waiter() -> None:
        with turn.hold():
            got.set()

    waiting = threading.Thread(target=waiter)
    waiting.start()
    assert not got.wait(0.1)  # still held elsewhere
    holder.release()
    assert got.wait(30)
    waiting.join()
    turn.close()


def test_a_waiter_polls_with_growing_pauses_no_longer_than_the_largest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pauses themselves, not a wall-clock figure: how soon a waiter starts after the
    # holder lets go is a benchmark's question, and this schedule is what bounds it.
    path = tmp_path / "turn"
    turn = WriteTurn(str(path), timeout_seconds=30.0)
    pauses: list[float] = []
    release_after = 12

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == release_after:
            holder.release()

    holder = HolderThread(path)
    monkeypatch.setattr(time, "sleep", sleep)  # write_lock sleeps through the time module
    with turn.hold():
        pass
    turn.close()
    assert len(pauses) == release_after  # it took the turn on the first try after
    assert pauses[0] == write_lock.FIRST_POLL_SECONDS
    assert pauses == sorted(pauses)
    assert max(pauses) == write_lock.MAX_POLL_SECONDS


def test_a_turn_kept_too_long_elsewhere_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "turn"
    turn = WriteTurn(str(path), timeout_seconds=0.05)
    kept = pytest.raises(StoreUnavailable, match="kept the ledger's write lock")
    with held_elsewhere(path), kept, turn.hold():
        pytest.fail("the turn was taken while another holder had it")
    with turn.hold():  # free again: taken at once
        pass
    turn.close()


def test_a_group_that_cannot_get_the_turn_fails_and_commits_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    config = SqliteStoreConfig(busy_timeout_ms=50, group_commit=GroupCommitConfig())
    store = SqliteLedgerStore(db, config=config)
    try:
        store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER)"))
        with held_elsewhere(tmp_path / "ledger.db.write-lock"):
            with pytest.raises(StoreUnavailable, match="could not be committed") as caught:
                store.execute(lambda tx: tx.run("INSERT INTO probe (value) VALUES (1)"))
            assert isinstance(caught.value.__cause__, StoreUnavailable)
        store.execute(lambda tx: tx.run("INSERT INTO probe (value) VALUES (2)"))  # recovers
    finally:
        store.close()
    conn = sqlite3.connect(db)
    try:
        assert [v for (v,) in conn.execute("SELECT value FROM probe")] == [2]
    finally:
        conn.close()


def _sqlite_error(code: int, name: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(name)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]  # as sqlite3 sets it
    error.sqlite_errorname = name  # type: ignore[attr-defined]
    return error


def test_a_busy_answer_while_opening_is_waited_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers open the ledger together; SQLite may answer BUSY at once (without its busy
    # handler) while another process rebuilds the WAL index. A test double answers BUSY
    # to the first two connection attempts.
    real = sqlite_store._open_connection
    refused: list[bool] = []

    def flaky(path: str, busy_timeout_ms: int, *, reader: bool) -> sqlite3.Connection:
        if len(refused) < 2:
            refused.append(reader)
            raise _sqlite_error(5, "SQLITE_BUSY")
        return real(path, busy_timeout_ms, reader=reader)

    monkeypatch.setattr(sqlite_store, "_open_connection", flaky)
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    try:
        store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER)"))
    finally:
        store.close()
    assert len(refused) == 2


def test_opening_gives_up_after_the_busy_timeout_and_never_retries_other_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []

    def always(code: int, name: str):  # type: ignore[no-untyped-def]
        def refuse(path: str, busy_timeout_ms: int, *, reader: bool) -> sqlite3.Connection:
            attempts.append(name)
            raise _sqlite_error(code, name)

        return refuse

    config = SqliteStoreConfig(busy_timeout_ms=100)
    monkeypatch.setattr(sqlite_store, "_open_connection", always(5, "SQLITE_BUSY"))
    with pytest.raises(StoreUnavailable, match="SQLITE_BUSY"):
        SqliteLedgerStore(tmp_path / "ledger.db", config=config)
    assert len(attempts) > 1  # waited, tried again
    attempts.clear()
    monkeypatch.setattr(sqlite_store, "_open_connection", always(14, "SQLITE_CANTOPEN"))
    with pytest.raises(StoreUnavailable, match="SQLITE_CANTOPEN"):
        SqliteLedgerStore(tmp_path / "ledger.db", config=config)
    assert attempts == ["SQLITE_CANTOPEN"]  # not a busy answer: no second try
