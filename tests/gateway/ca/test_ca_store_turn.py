"""A CA write holds ca.db's write lock only while it holds the worker's turn, or commits.

A write that finds ca.db's lock taken (another process writing) waits for it aside from
the turn (``test_ca_store_waits``). It used to wait in SQLite's busy handler, aside, and
so took the lock without the turn, then waited for the turn with the lock held: any long
holder of the turn (another call computing, a token call that does not return) kept ca.db
shut to every other process of the bank meanwhile. Now BEGIN IMMEDIATE is tried with the
turn held and without waiting; while ca.db is busy the turn is given up for a pause, then
taken back for the next try. The COMMIT (the fsync) runs aside: it lets the lock go
before the turn is waited for again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.ca import CaStore, StoreError
from gateway.ca import store as ca_store
from gateway.ca.errors import StoreBug
from gateway.cpu_turn import PROCESS_TURN

from .test_ca_store_waits import Waiting, _session, _write, locked_for

# How long another call of the worker holds the turn while the write waits for it.
HOLD_S = 2.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    with closing(CaStore.open(tmp_path / "ca.db", create=True)) as opened:
        yield opened


def _turn_at_statements(store: CaStore) -> list[tuple[str, int]]:
    """Each statement of the store's write connection, with how deep its thread held the
    turn when it ran (0: given up), from now on."""
    seen: list[tuple[str, int]] = []
    store._db.set_trace_callback(lambda sql: seen.append((sql, PROCESS_TURN._depth())))
    return seen


def _busy_timeout(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA busy_timeout").fetchone()[0])


def test_a_write_never_holds_ca_db_while_it_waits_for_the_turn(store: CaStore) -> None:
    writer = Waiting(_write(store, b"W" * 16))
    holder_has_turn = threading.Event()

    def long_holder() -> None:  # another call of the worker, computing (or a hung token call)
        with PROCESS_TURN.held():
            holder_has_turn.set()
            time.sleep(HOLD_S)

    holder = threading.Thread(target=long_holder, daemon=True)
    with locked_for(store.path, 0.5):  # another process writes; the write waits
        writer.start()
        time.sleep(0.2)
        holder.start()  # takes the turn the waiting write gave up
        assert holder_has_turn.wait(2)
    time.sleep(0.3)  # ca.db free again, the turn still the holder's
    other = sqlite3.connect(store.path, isolation_level=None, timeout=0.5)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write: not shut out
        other.execute("ROLLBACK")
        writer_waiting = writer.is_alive()
    finally:
        other.close()
    holder.join()
    writer.join()
    assert writer_waiting  # it was still waiting for the turn when the other wrote
    assert writer.failure is None and writer.turn_after == 1
    with store.read() as tx:
        assert tx.session(b"W" * 16) is not None


def test_begin_runs_with_the_turn_and_commit_aside(store: CaStore) -> None:
    seen = _turn_at_statements(store)
    writer = Waiting(_write(store, b"C" * 16))
    writer.start()
    writer.join()
    store._db.set_trace_callback(None)
    assert writer.failure is None
    turn_at = {sql: depth for sql, depth in seen}
    assert turn_at["BEGIN IMMEDIATE"] == 1  # the lock taken only with the turn
    assert turn_at["COMMIT"] == 0  # and let go, with the fsync, aside from it


def test_every_try_for_a_busy_ca_db_is_made_with_the_turn(store: CaStore) -> None:
    seen = _turn_at_statements(store)
    with locked_for(store.path, 0.3):
        writer = Waiting(_write(store, b"T" * 16))
        writer.start()
        writer.join()
    store._db.set_trace_callback(None)
    assert writer.failure is None
    tries = [depth for sql, depth in seen if sql == "BEGIN IMMEDIATE"]
    assert len(tries) > 1 and set(tries) == {1}
    # The connection waits as before for anything else (a read of the store made with it).
    assert _busy_timeout(store._db) == ca_store.BUSY_TIMEOUT_MS


def test_a_write_given_up_after_the_busy_timeout_restores_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ca_store, "BUSY_TIMEOUT_MS", 200)
    with closing(CaStore.open(tmp_path / "ca.db", create=True)) as store:
        with locked_for(store.path, 1.0):
            started = time.monotonic()
            writer = Waiting(_write(store, b"G" * 16))
            writer.start()
            writer.join()
            waited = time.monotonic() - started
        assert isinstance(writer.failure, StoreError)
        assert "SQLITE_BUSY" in str(writer.failure)
        assert 0.2 <= waited < 0.9  # the busy timeout, not the lock's whole second
        assert writer.turn_after == -1  # failed, under its turn
        assert _busy_timeout(store._db) == 200


def test_a_sweep_store_tries_once(tmp_path: Path) -> None:
    """A store of ``open_for_sweep`` with no busy timeout never waits: one try."""
    CaStore.open(tmp_path / "ca.db", create=True).close()
    with closing(CaStore.open_for_sweep(tmp_path / "ca.db", 0)) as sweeping:
        seen = _turn_at_statements(sweeping)
        with locked_for(sweeping.path, 1.0):
            started = time.monotonic()
            with pytest.raises(StoreError, match="SQLITE_BUSY"), sweeping.write():
                pass  # pragma: no cover - never entered
            waited = time.monotonic() - started
        assert waited < 0.5
        assert [sql for sql, _ in seen].count("BEGIN IMMEDIATE") == 1


def test_a_refusal_other_than_busy_is_not_tried_again(store: CaStore) -> None:
    """A write begun inside the thread's own write: SQLite refuses it at once (a bug),
    and nothing has it tried again for the busy timeout."""
    seen = _turn_at_statements(store)
    started = time.monotonic()
    with pytest.raises(StoreBug), store.write() as tx:
        tx.put_session(_session(b"O" * 16))
        with store.write():
            pass  # pragma: no cover - never entered
    assert time.monotonic() - started < 0.5
    store._db.set_trace_callback(None)
    assert [sql for sql, _ in seen].count("BEGIN IMMEDIATE") == 2
    with store.read() as read:
        assert read.session(b"O" * 16) is None  # the outer write rolled back
