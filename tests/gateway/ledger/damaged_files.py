"""A ledger file damaged on purpose, and the operator's copy of it to restore.

The ledger is made by the real SQLite store, closed (its WAL checkpointed into the file
and removed, so the file alone is the ledger), copied as the operator's backup would
be, then overwritten in place: a table's pages (SQLITE_CORRUPT) or the file's header
(SQLITE_NOTADB).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore
from gateway.ledger.store import LedgerStore
from tests.gateway.ledger.ledger_support import FakeClock

# Bytes written over the start of a damaged page: its b-tree page header and the first
# cell pointers, enough that SQLite cannot take the page for any kind it knows.
DAMAGE = b"\xff" * 64
# The SQLite file header's first 16 bytes ("SQLite format 3\0"): zeroed, the file is no
# database to SQLite.
HEADER_BYTES = 16

Opener = Callable[[Path], LedgerStore]


@dataclass
class ScratchLedger:
    """A ledger file, closed, and the operator's copy of it."""

    path: Path
    backup: Path
    keys: LedgerKeys
    clock: FakeClock

    @classmethod
    def make(cls, directory: Path, fill: Callable[[Ledger], object]) -> ScratchLedger:
        """A ledger in ``directory``, ``fill``ed, closed and copied."""
        made = cls(
            directory / "ledger.db", directory / "ledger-copy.db", LedgerKeys.generate(),
            FakeClock(),
        )  # fmt: skip
        ledger = made.open()
        try:
            fill(ledger)
        finally:
            ledger.close()
        left = sorted(p.name for p in directory.glob("ledger.db*"))
        assert left == ["ledger.db", "ledger.db.write-lock"], left  # no WAL left behind
        shutil.copyfile(made.path, made.backup)
        return made

    def open(self, opener: Opener = SqliteLedgerStore) -> Ledger:
        return Ledger(opener(self.path), self.keys, clock=self.clock)

    def damage_table(self, table: str) -> list[str]:
        """Overwrite the root page of ``table`` and of each of its indexes (a small
        table's only pages); return their names."""
        db = sqlite3.connect(self.path)
        try:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            roots = db.execute(
                "SELECT name, rootpage FROM sqlite_schema WHERE tbl_name = ? AND rootpage > 0",
                (table,),
            ).fetchall()
        finally:
            db.close()
        with self.path.open("r+b") as file:
            for _, root in roots:
                file.seek((root - 1) * page_size)
                file.write(DAMAGE)
        return [name for name, _ in roots]

    def damage_header(self) -> None:
        """Zero the file's header: SQLite no longer takes it for a database."""
        with self.path.open("r+b") as file:
            file.write(b"\0" * HEADER_BYTES)

    def restore(self) -> None:
        """What the operator does: the copy put back in place of the damaged file."""
        for stale in self.path.parent.glob(self.path.name + "-*"):  # -wal, -shm
            stale.unlink()
        shutil.copyfile(self.backup, self.path)
