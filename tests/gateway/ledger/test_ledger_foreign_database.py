"""A ledger pointed at another program's database refuses it and creates nothing there.

A bank's configuration names several databases (the CA's ``ca.db``, the ledger's); one
mistyped name, or a PostgreSQL database whose public schema other programs use, must
not end with the ledger's tables among theirs.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.ledger import SchemaError, SqliteLedgerStore, StoreUnavailable
from gateway.ledger.schema import SCHEMA_VERSION
from tests.gateway.ledger.ledger_support import (
    Backend,
    PgCluster,
    postgres_backend,
    sqlite_backend,
)

# Every table and view the database holds, by name (in the test schema on PostgreSQL).
_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name",
    "postgres": "SELECT table_name FROM information_schema.tables"
    " WHERE table_schema = current_schema() ORDER BY table_name",
}


@pytest.fixture(params=["sqlite", "postgres"])
def raw_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """An empty database of each kind, not yet opened by any store."""
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "ca.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return postgres_backend(cluster.new_schema())


def _tables(backend: Backend) -> list[str]:
    return [str(name) for (name,) in backend.raw_query(_TABLES[backend.name])]


@pytest.mark.parametrize("schema_version", ["absent", "empty"])
def test_another_programs_database_is_refused_untouched(
    raw_backend: Backend, schema_version: str
) -> None:
    raw_backend.raw_execute("CREATE TABLE certificates (serial INTEGER PRIMARY KEY)")
    raw_backend.raw_execute("INSERT INTO certificates (serial) VALUES (1)")
    if schema_version == "empty":
        raw_backend.raw_execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    before = _tables(raw_backend)
    with pytest.raises(SchemaError, match=r"not a ledger database.*first: certificates"):
        raw_backend.open_store()
    assert _tables(raw_backend) == before
    assert raw_backend.raw_query("SELECT serial FROM certificates") == [(1,)]


def test_a_ledger_with_a_table_of_the_operators_still_opens(raw_backend: Backend) -> None:
    raw_backend.open_store().close()
    raw_backend.raw_execute("CREATE TABLE audit_notes (note TEXT)")
    raw_backend.open_store().close()
    assert raw_backend.raw_query("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


@pytest.mark.parametrize("content", ["a CA database", "not a database"])
def test_another_programs_file_keeps_its_mode_journal_and_bytes(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "ca.db"
    if content == "a CA database":
        backend = sqlite_backend(path)  # sqlite3's defaults: a rollback journal ("delete")
        backend.raw_execute("CREATE TABLE certificates (serial INTEGER PRIMARY KEY)")
        backend.raw_execute("INSERT INTO certificates (serial) VALUES (1)")
        refusal: type[Exception] = SchemaError
    else:
        path.write_text("serial,subject\n")
        refusal = StoreUnavailable  # SQLITE_NOTADB, as for a damaged ledger file
    path.chmod(0o644)
    before = path.read_bytes()
    with pytest.raises(refusal):
        SqliteLedgerStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.db"]  # no -wal, -shm, lock
    if content == "a CA database":
        assert sqlite_backend(path).raw_query("PRAGMA journal_mode") == [("delete",)]
