"""ca.db busy is a fault that passes, for a worker's start: the CA's ``StoreBusy``.

A replacement worker opening ca.db while another connection held its write lock past the
busy timeout (``setpay ca revoke``, an operator's shell) failed with the CA's plain
StoreError, which the supervisor takes as lasting: it stopped the whole bank. SQLite's
BUSY is now the CA's ``StoreBusy`` (``gateway.sqlite_errors.held_by_another``), which
``gateway.child.PASSING_FAULTS`` holds; every other StoreError (a damaged or missing
ca.db) still lasts, and a replacement meeting it still stops the bank.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.ca import store as ca_store
from gateway.ca.errors import SchemaMismatch, StoreBusy, StoreError
from gateway.ca.store import CaStore, translate_error
from gateway.child import fault_line, passes
from gateway.sqlite_errors import held_by_another


def _error(code: int, name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(name)
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    ("code", "name", "held"),
    [
        (5, "SQLITE_BUSY", True),
        (5 | (2 << 8), "SQLITE_BUSY_SNAPSHOT", True),
        (6, "SQLITE_LOCKED", False),  # one connection's conflict with itself: a bug
        (26, "SQLITE_NOTADB", False),
        (11, "SQLITE_CORRUPT", False),
        (14, "SQLITE_CANTOPEN", False),
    ],
)
def test_only_busy_is_held_by_another(code: int, name: str, held: bool) -> None:
    assert held_by_another(_error(code, name)) is held
    translated = translate_error(_error(code, name))
    assert isinstance(translated, StoreError)  # an outage, answered UNAVAILABLE
    assert isinstance(translated, StoreBusy) is held
    assert passes(fault_line(translated)) is held


def test_the_ca_store_busy_passes_and_its_other_faults_last() -> None:
    assert passes(fault_line(StoreBusy("cannot open CA database: database is locked")))
    assert not passes(fault_line(StoreError("cannot open CA database: file is not a database")))
    assert not passes(fault_line(SchemaMismatch("ca.db holds no setpay CA schema")))


def _made(tmp_path: Path) -> Path:
    path = tmp_path / "ca.db"
    CaStore.open(path, create=True).close()
    return path


def test_opening_ca_db_while_another_holds_its_write_lock_is_store_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _made(tmp_path)
    monkeypatch.setattr(ca_store, "BUSY_TIMEOUT_MS", 100)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy, match="cannot open CA database"):
            CaStore.open(path)
    finally:
        other.rollback()
        other.close()
    CaStore.open(path).close()  # let go: it opens


def test_opening_a_damaged_ca_db_is_no_store_busy(tmp_path: Path) -> None:
    path = _made(tmp_path)
    with open(path, "r+b") as f:  # its header no SQLite's
        f.write(b"\xde\xad" * 50)
    with pytest.raises(StoreError) as raised:
        CaStore.open(path)
    assert not isinstance(raised.value, StoreBusy)
    assert not passes(fault_line(raised.value))


def test_a_missing_ca_db_is_no_store_busy(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as raised:
        CaStore.open(tmp_path / "ca.db")
    assert not isinstance(raised.value, StoreBusy)
