"""The ledger's SQLite store and the CA's ca.db read every sqlite3 error alike.

Both translate at their own boundary into their own error trees, by one sorting
(``gateway.sqlite_errors``): an outage for one is an outage for the other. They used to
keep a list each, and a damaged file (CORRUPT, NOTADB) was an outage for the CA and a
failure for the ledger. Each error here is a real one, made by SQLite on a scratch file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.ca import errors as ca_errors
from gateway.ca import store as ca_store
from gateway.ledger import StoreError, StoreUnavailable
from gateway.ledger import sqlite as ledger_sqlite
from gateway.sqlite_errors import SqliteFault, classify
from tests.gateway.ledger.damaged_files import DAMAGE, HEADER_BYTES

Make = Callable[[Path], object]


def _database(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    db.execute("INSERT OR IGNORE INTO t (v) VALUES ('taken')")
    return db


def _busy(path: Path) -> object:
    with closing(_database(path)) as holder, closing(_database(path)) as other:
        holder.execute("BEGIN IMMEDIATE")
        return other.execute("BEGIN IMMEDIATE")


def _read_only(path: Path) -> object:
    _database(path).close()
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        return db.execute("INSERT INTO t (v) VALUES ('more')")


def _cannot_open(path: Path) -> object:
    return sqlite3.connect(f"{(path.parent / 'no-such-dir' / 'x.db').as_uri()}?mode=rw", uri=True)


def _corrupt(path: Path) -> object:
    with closing(_database(path)) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = 't'").fetchone()[0]
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(DAMAGE)
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT * FROM t").fetchall()


def _not_a_database(path: Path) -> object:
    _database(path).close()
    with path.open("r+b") as file:
        file.write(b"\0" * HEADER_BYTES)
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT * FROM t").fetchall()


def _constraint(path: Path) -> object:
    with closing(_database(path)) as db:
        return db.execute("INSERT INTO t (v) VALUES ('taken')")


def _no_such_table(path: Path) -> object:
    with closing(_database(path)) as db:
        return db.execute("SELECT * FROM no_such_table")


def _too_few_parameters(path: Path) -> object:
    with closing(_database(path)) as db:
        return db.execute("SELECT * FROM t WHERE v = ?", ())


CASES: dict[str, tuple[Make, SqliteFault]] = {
    "busy": (_busy, SqliteFault.OUTAGE),
    "read-only": (_read_only, SqliteFault.OUTAGE),
    "cannot-open": (_cannot_open, SqliteFault.OUTAGE),
    "corrupt": (_corrupt, SqliteFault.OUTAGE),
    "not-a-database": (_not_a_database, SqliteFault.OUTAGE),
    "constraint": (_constraint, SqliteFault.CONSTRAINT),
    "no-such-table": (_no_such_table, SqliteFault.BUG),
    "too-few-parameters": (_too_few_parameters, SqliteFault.BUG),
}


@pytest.fixture(params=CASES)
def case(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[sqlite3.Error, SqliteFault]]:
    make, fault = CASES[request.param]
    with pytest.raises(sqlite3.Error) as raised:
        make(tmp_path / "scratch.db")
    yield raised.value, fault


def test_both_stores_read_an_error_alike(case: tuple[sqlite3.Error, SqliteFault]) -> None:
    error, fault = case
    assert classify(error) is fault
    ledger, ca = ledger_sqlite.translate_error(error), ca_store.translate_error(error)
    assert isinstance(ledger, StoreError)
    assert ledger.__cause__ is error
    if fault is SqliteFault.OUTAGE:
        assert isinstance(ledger, StoreUnavailable), repr(ledger)
        assert isinstance(ca, ca_errors.StoreError), repr(ca)
    else:
        assert not isinstance(ledger, StoreUnavailable), repr(ledger)
        assert isinstance(ca, ca_errors.StoreBug), repr(ca)
        assert isinstance(ca, ca_errors.ConstraintViolation) == (fault is SqliteFault.CONSTRAINT)
