"""The writer checkpoints the WAL after answering a group's callers, never inside the
COMMIT they wait for, and the WAL stays bounded with two processes writing one file."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger import SqliteLedgerStore
from gateway.ledger.store import Transaction

# Commits per process in the bound test, and the bound: each commit adds about six pages
# (a 20 kB row); unchecked, two processes' commits would leave a WAL of ~10 MB, while a
# checkpoint every 32 commits of each (``group_commit``) keeps it near 1.5 MB.
COMMITS_PER_PROCESS = 200
# More commits than the writer's checkpoint interval (32).
COMMITS_PAST_A_CHECKPOINT = 40
WAL_BOUND_BYTES = 4 * 1024 * 1024


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
