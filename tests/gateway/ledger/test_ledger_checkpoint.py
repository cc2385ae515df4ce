"""The writer checkpoints the WAL after answering a group's callers, never inside the
COMMIT they wait for, and as it closes; the WAL stays bounded with two processes writing
one file, and beside an idle bank while short-lived stores (``setpay bank`` commands)
and migrations write."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger import SqliteLedgerStore, sqlite
from gateway.ledger.group_commit import GroupCommitConfig
from gateway.ledger.schema import Dialect
from gateway.ledger.store import Transaction

# Commits per process in the bound test, and the bound: each commit adds about six pages
# (a 20 kB row); unchecked, two processes' commits would leave a WAL of ~10 MB, while a
# checkpoint every 32 commits of each (``group_commit``) keeps it near 1.5 MB.
COMMITS_PER_PROCESS = 200
# More commits than the writer's checkpoint interval (32).
COMMITS_PAST_A_CHECKPOINT = 40
WAL_BOUND_BYTES = 4 * 1024 * 1024
# Short-lived stores, each one commit of a 20 kB row (about six pages), beside an idle
# one: copied back by none, their pages would leave a WAL of ~3 MB; each copied back as
# its store closes, the next one writes the WAL from its top again, some 40 kB.
SHORT_LIVED_STORES = 150
SHORT_LIVED_WAL_BOUND_BYTES = 1024 * 1024
# Migrations, each writing 200 kB (a big ledger's new index, in small), beside an idle
# store: ~4 MB if none is copied back.
MIGRATIONS = 20


def _pad(tx: Transaction) -> int:
    return tx.run("INSERT INTO pad (b) VALUES (randomblob(20000))")


def _make_pad_table(path: Path) -> None:
    store = SqliteLedgerStore(path)
    try:
        store.execute(lambda tx: tx.run("CREATE TABLE IF NOT EXISTS pad (b BLOB)"))
    finally:
        store.close()


def test_the_checkpoint_runs_after_the_callers_are_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    _make_pad_table(path)
    events: list[str] = []

    class Recording(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql == "COMMIT":
                events.append("commit")
            elif sql.startswith("PRAGMA wal_checkpoint"):
                events.append("checkpoint")
            return super().execute(sql, *args)

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(*args, factory=Recording, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    store = SqliteLedgerStore(path)
    try:
        for _ in range(COMMITS_PAST_A_CHECKPOINT):
            answered = threading.Event()

            def on_done(
                result: object, error: BaseException | None, answered: threading.Event = answered
            ) -> None:
                events.append("answered")
                answered.set()

            store.submit(_pad, on_done)
            assert answered.wait(10)
    finally:
        store.close()
    checkpoints = [i for i, event in enumerate(events) if event == "checkpoint"]
    assert checkpoints, "the writer never checkpointed"
    assert all(events[i - 2 : i] == ["commit", "answered"] for i in checkpoints), events


def _write_from_process(path: str, count: int) -> int:
    store = SqliteLedgerStore(path)
    largest = 0
    try:
        for _ in range(count):
            store.execute(_pad)
            largest = max(largest, os.path.getsize(f"{path}-wal"))
    finally:
        store.close()
    return largest


def test_two_processes_keep_the_wal_bounded(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _make_pad_table(path)
    # A store kept open here too, as a reader, so neither process's close is the last one
    # (the last connection to close checkpoints and removes the WAL whatever it holds).
    keeper = SqliteLedgerStore(path)
    try:
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            largest = pool.starmap(_write_from_process, [(str(path), COMMITS_PER_PROCESS)] * 2)
        assert keeper.read(lambda tx: tx.one("SELECT COUNT(*) AS n FROM pad")) == {
            "n": 2 * COMMITS_PER_PROCESS
        }
    finally:
        keeper.close()
    assert max(largest) < WAL_BOUND_BYTES, largest


def _wal_size(path: Path) -> int:
    return os.path.getsize(f"{path}-wal")


def test_short_lived_stores_beside_an_idle_one_keep_the_wal_bounded(tmp_path: Path) -> None:
    """Before, a store closed after fewer commits than its checkpoint interval left its
    pages in the WAL: the idle store (a serving bank) keeps the file open, so no close was
    the last one, and it commits nothing, so it never checkpointed either."""
    path = tmp_path / "ledger.db"
    _make_pad_table(path)
    idle = SqliteLedgerStore(path)
    try:
        largest = 0
        for _ in range(SHORT_LIVED_STORES):
            command = SqliteLedgerStore(path)
            try:
                command.execute(_pad)
            finally:
                command.close()
            largest = max(largest, _wal_size(path))
        assert idle.read(lambda tx: tx.one("SELECT COUNT(*) AS n FROM pad")) == {
            "n": SHORT_LIVED_STORES
        }
    finally:
        idle.close()
    assert largest < SHORT_LIVED_WAL_BOUND_BYTES, largest


def test_a_migration_beside_an_idle_store_is_copied_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration commits on a connection of its own, not the writer's: before, its
    pages stayed in the WAL whenever another process had the file open."""
    path = tmp_path / "ledger.db"
    _make_pad_table(path)
    real_migrate = sqlite.migrate

    def bulky_migration(tx: Transaction, dialect: Dialect) -> int:
        real_migrate(tx, dialect)
        tx.run("INSERT INTO pad (b) VALUES (randomblob(200000))")
        return 0  # as found before a real migration: it wrote

    monkeypatch.setattr(sqlite, "migrate", bulky_migration)
    idle = SqliteLedgerStore(path)
    try:
        largest = 0
        for _ in range(MIGRATIONS):
            SqliteLedgerStore(path).close()
            largest = max(largest, _wal_size(path))
    finally:
        idle.close()
    assert largest < SHORT_LIVED_WAL_BOUND_BYTES, largest


def test_a_writer_that_never_checkpoints_is_refused() -> None:
    # Automatic checkpoints are off on every connection: nobody else would copy its WAL.
    with pytest.raises(ValueError, match="checkpoint"):
        GroupCommitConfig(checkpoint_every=0)
