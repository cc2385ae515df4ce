"""The merchant's SQLite file: opened durable, migrated, and its transactions.

WAL mode with ``synchronous=FULL``: an answer that reports a state change (a PRes saying
"authorized", a capture the gateway accepted) leaves only after the change is on disk.
Several processes may share the file (``setpay merchant serve`` and ``setpay merchant
capture``); writes take SQLite's write lock at their start (``BEGIN IMMEDIATE``) and
wait up to ``BUSY_TIMEOUT_MS`` for it. ``clients.merchant.store`` holds what is written
over these transactions; ``sqlite3`` failures become ``StoreError`` here.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from clients.errors import StoreError, UnknownOrder
from clients.merchant.schema import migrate

# A writer in another process (a CLI capture while the server runs) holds the lock for a
# few milliseconds; five seconds only bounds a stuck one.
BUSY_TIMEOUT_MS = 5000
# merchant.db and its -wal and -shm files: the merchant's user's alone, whatever the
# umask. They hold the orders, the cardholders' certificate thumbprints, the sealed PIs
# and the capture tokens. SQLite gives the -wal and -shm files it creates the database
# file's permissions.
DATABASE_MODE = 0o600
# The files SQLite keeps beside the database in WAL mode.
_WAL_SUFFIXES = ("-wal", "-shm")

T = TypeVar("T")


def now_ms() -> int:
    """The time a row is stored or changed, in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def _make_private(path: Path) -> None:
    """Create the database file owner-only before SQLite opens it; narrow it, and its
    -wal and -shm files, to owner-only where an older setpay left them wider."""
    # An existing file was made before, or by another of the merchant's processes just now.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DATABASE_MODE))
    for name in (path, *(path.with_name(path.name + suffix) for suffix in _WAL_SUFFIXES)):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except FileNotFoundError:
            continue
        if mode & ~DATABASE_MODE:
            os.chmod(name, mode & DATABASE_MODE)


class Database:
    """One connection to the merchant's file under a lock (thread-safe)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        # Files it cannot make or narrow raise their OSError, naming the file, as the
        # directory's does.
        self._path.parent.mkdir(parents=True, exist_ok=True)
        _make_private(self._path)
        try:
            self._conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )  # fmt: skip
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            migrate(self._conn, self._path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the merchant database {self._path}: {exc}") from exc

    def settings(self) -> dict[str, object]:
        """The settings that make the file durable: journal mode, synchronous, schema."""

        def read(conn: sqlite3.Connection) -> dict[str, object]:
            return {
                "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
                "schema_version": conn.execute("PRAGMA user_version").fetchone()[0],
            }

        return self._read(read)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"merchant database write refused: {exc}") from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"merchant database write failed: {exc}") from exc
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        # SQLite rolls a transaction back itself on some errors (a full disk, an I/O
        # error): a second ROLLBACK would fail and hide the error that matters.
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                raise StoreError(f"merchant database read failed: {exc}") from exc

    def _one(self, sql: str, key: bytes, missing: str) -> tuple[Any, ...]:
        """The one row ``sql`` finds for ``key``; ``UnknownOrder(missing)`` if none."""
        row: tuple[Any, ...] | None = self._read(lambda c: c.execute(sql, (key,)).fetchone())
        if row is None:
            raise UnknownOrder(missing)
        return row
