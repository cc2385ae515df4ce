"""``setpay bank check-books`` and ``show-batch`` open the ledger read-only: they never
create a ledger where there is none, never migrate an older one, never lock, narrow or
mark the SQLite file, and read beside a write transaction another process holds.

Each refusal is checked with the ledger's bytes, mode and neighbouring files, or the
PostgreSQL schema's tables and version, as they were before; and the audit's count line
past ``books.MAX_DIFFERENCES`` differences.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from cli import bank_books
from gateway.config import load
from gateway.issuer import open_ledger
from gateway.ledger import (
    LedgerStore,
    PostgresLedgerStore,
    SchemaError,
    SqliteLedgerStore,
    StoreError,
)
from gateway.ledger.books import MAX_DIFFERENCES
from gateway.ledger.schema import SCHEMA_VERSION
from gateway.ledger.sqlite import BUSY_TIMEOUT_MS
from gateway.provisioning import init_bank
from tests.cli.command_support import run_bank
from tests.gateway.ledger.ledger_support import (
    MERCHANT,
    PAN_A,
    TEST_DATABASE,
    Bank,
    PgCluster,
    throwaway_pg_cluster,
)
from tests.gateway.ledger.operator_support import Settled, settle_bank_ledger

# A ledger marked one version older: its tables hold version 8's columns too, which no
# read-only command reads before it refuses the version.
OLDER = SCHEMA_VERSION - 1
# The mode an operator gave the ledger (a backup reader in its group), not the store's own.
GROUP_READABLE = 0o640


@dataclass(frozen=True)
class Template:
    """A bank (``setpay init``'s) and a copy of its SQLite ledger holding a settled batch."""

    config: Path
    ledger: Path
    settled: Settled


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    directory = tmp_path_factory.mktemp("read-only") / "bank"
    init_bank(directory, env={})
    config = directory / "setpay.toml"
    return Template(config, directory / "ledger.db", settle_bank_ledger(config, env={}))


@pytest.fixture
def ledger_file(
    template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A copy of the template's ledger, alone in a directory of its own, that the commands
    this test runs read (``SETPAY_LEDGER``)."""
    place = tmp_path / "ledger"
    place.mkdir()
    copy = place / "ledger.db"
    shutil.copyfile(template.ledger, copy)
    monkeypatch.setenv("SETPAY_LEDGER", f"sqlite:{copy}")
    yield copy


def _both(template: Template) -> list[list[str]]:
    """The two commands' command lines."""
    bank = ["--config", str(template.config)]
    return [
        [*bank, "check-books"],
        [*bank, "show-batch", "--merchant-id", MERCHANT, "--batch", template.settled.batch_id],
    ]


def _sql(path: Path, *statements: str) -> list[tuple[object, ...]]:
    """Run ``statements`` over a connection of their own, committed; the last one's rows.
    The connection is the file's last: its WAL is copied back and removed."""
    conn = sqlite3.connect(path)
    try:
        rows: list[tuple[object, ...]] = []
        for statement in statements:
            rows = list(conn.execute(statement))
        conn.commit()
        return rows
    finally:
        conn.close()


def _state(path: Path) -> tuple[bytes, int, list[str]]:
    """The file's bytes and mode, and the names in its directory."""
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode), sorted(os.listdir(path.parent))


def test_an_empty_file_is_no_ledger_and_stays_empty(
    template: Template, ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 0-byte file (touched by hand, a restore gone wrong) is refused: opened for
    writing, it would have been made an empty ledger whose books balance."""
    ledger_file.write_bytes(b"")
    for argv in _both(template):
        code, out, err = run_bank(argv, capsys)
        assert (code, out) == (1, "")
        assert err.startswith("setpay bank: no ledger here: the database holds no table"), err
    assert _state(ledger_file) == (b"", stat.S_IMODE(ledger_file.stat().st_mode), ["ledger.db"])


def test_a_ledger_of_an_older_schema_version_is_refused_and_left_byte_for_byte(
    template: Template, ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sql(ledger_file, f"UPDATE schema_version SET version = {OLDER}")
    before = _state(ledger_file)
    for argv in _both(template):
        code, out, err = run_bank(argv, capsys)
        assert (code, out) == (1, "")
        assert f"schema version {OLDER}, this release's is {SCHEMA_VERSION}" in err, err
        assert "nothing was changed" in err
    data, mode, names = _state(ledger_file)
    assert (data, mode) == before[:2]  # not migrated: the version and every page as found
    # What SQLite leaves of a read-only reader of a WAL file, if anything: no lock file.
    assert set(names) <= {"ledger.db", "ledger.db-wal", "ledger.db-shm"}
    assert _sql(ledger_file, "SELECT version FROM schema_version") == [(OLDER,)]


def test_a_ledger_newer_than_the_code_is_refused(
    template: Template, ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sql(ledger_file, f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    before = _state(ledger_file)[0]
    code, out, err = run_bank(_both(template)[0], capsys)
    assert (code, out) == (1, "")
    assert f"schema version {SCHEMA_VERSION + 1}; this code knows up to {SCHEMA_VERSION}" in err
    assert _state(ledger_file)[0] == before


def test_another_program_s_file_is_refused_unchanged(
    template: Template, ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger_file.unlink()
    _sql(ledger_file, "CREATE TABLE certificates (serial INTEGER)")
    before = _state(ledger_file)
    code, out, err = run_bank(_both(template)[0], capsys)
    assert (code, out) == (1, "")
    assert "is not a ledger database" in err and "certificates" in err
    assert _state(ledger_file) == before


def test_the_audit_leaves_the_file_s_mode_and_makes_no_lock_file(
    template: Template, ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Opened for writing, the store narrows the file to 0600 and makes
    ``ledger.db.write-lock`` beside it; read-only, it does neither."""
    ledger_file.chmod(GROUP_READABLE)
    before = ledger_file.read_bytes()
    for argv in _both(template):
        assert run_bank(argv, capsys)[0] == 0
    assert stat.S_IMODE(ledger_file.stat().st_mode) == GROUP_READABLE
    assert ledger_file.read_bytes() == before
    names = set(os.listdir(ledger_file.parent))
    assert names <= {"ledger.db", "ledger.db-wal", "ledger.db-shm"}, names
    for name in names:  # SQLite gives a reader's -wal and -shm the file's own mode
        assert stat.S_IMODE((ledger_file.parent / name).stat().st_mode) == GROUP_READABLE


def test_a_write_transaction_held_elsewhere_does_not_stop_the_audit(
    template: Template, ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process's open write transaction (its uncommitted change unbalancing the
    books) neither delays the audit to SQLite's busy timeout nor shows in its snapshot."""
    holder = sqlite3.connect(ledger_file, isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode = WAL")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE transfers SET amount = amount + 5 WHERE kind = 'credit'")
        started = time.monotonic()
        outcome = run_bank(_both(template)[0], capsys)
        took = time.monotonic() - started
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert outcome == (0, "books balance\n", "")
    assert took < BUSY_TIMEOUT_MS / 1000 / 2, took


def test_more_differences_than_listed_are_said_so(
    template: Template, ledger_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One past ``MAX_DIFFERENCES``: the first ``MAX_DIFFERENCES`` listed, then the line
    saying there are more (never a count of the listed ones as if they were all)."""
    ledger = open_ledger(load(template.config, env={"SETPAY_LEDGER": f"sqlite:{ledger_file}"}))
    try:
        bank = Bank(ledger)
        for _ in range(MAX_DIFFERENCES + 1):
            bank.authorize(PAN_A, 1)
    finally:
        ledger.close()
    # Each authorization's pending transfer filed in a batch: one difference each.
    _sql(ledger_file, "UPDATE transfers SET batch_seq = 7 WHERE kind = 'authorization'")
    code, out, err = run_bank(_both(template)[0], capsys)
    assert (code, err) == (bank_books.EXIT_DIFFERS, "")
    *listed, last = out.splitlines()
    assert len(listed) == MAX_DIFFERENCES
    assert all(line.startswith("transfer ") for line in listed)
    assert last == (
        f"more than {MAX_DIFFERENCES} differences, the first {MAX_DIFFERENCES} listed: "
        "the books do not balance"
    )


def _reads_the_version_and_writes_nothing(store: LedgerStore) -> None:
    """A write through ``store`` (opened read-only) is refused; it reads; closed after."""
    try:
        with pytest.raises(StoreError, match="opened read-only"):
            store.execute(lambda tx: tx.run("DELETE FROM schema_version"))
        assert store.read(lambda tx: tx.all("SELECT version FROM schema_version")) == [
            {"version": SCHEMA_VERSION}
        ]
    finally:
        store.close()


def test_a_read_only_sqlite_store_writes_nothing(ledger_file: Path) -> None:
    store = SqliteLedgerStore(ledger_file, read_only=True)
    _reads_the_version_and_writes_nothing(store)


# PostgreSQL: a schema of its own for each test, in one cluster.

_schemas = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as pg:
        yield pg


@dataclass(frozen=True)
class PgLedger:
    """A new, empty schema, the URL the commands read it by, and raw SQL on it."""

    schema: str
    url: str
    conninfo: str

    def sql(self, statement: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cursor = conn.execute(statement.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def tables(self) -> list[str]:
        return [
            str(name)
            for (name,) in self.sql(
                f"SELECT tablename FROM pg_tables WHERE schemaname = '{self.schema}' ORDER BY 1"
            )
        ]


@pytest.fixture
def pg_ledger(cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> PgLedger:
    schema = f"read_only_{next(_schemas)}"
    url = cluster.ledger_url(schema)
    monkeypatch.setenv("SETPAY_LEDGER", url)
    return PgLedger(schema, url, cluster.conninfo(TEST_DATABASE, schema))


def test_an_empty_postgresql_schema_is_no_ledger_and_stays_empty(
    template: Template, pg_ledger: PgLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in _both(template):
        code, out, err = run_bank(argv, capsys)
        assert (code, out) == (1, "")
        assert err.startswith("setpay bank: no ledger here: the database records no"), err
    assert pg_ledger.tables() == []


def test_a_postgresql_ledger_of_an_older_version_is_refused_and_not_migrated(
    template: Template, pg_ledger: PgLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    PostgresLedgerStore(pg_ledger.url).close()  # a current ledger, made by the store
    pg_ledger.sql(f"UPDATE schema_version SET version = {OLDER}")
    tables = pg_ledger.tables()
    for argv in _both(template):
        code, out, err = run_bank(argv, capsys)
        assert (code, out) == (1, "")
        assert f"schema version {OLDER}, this release's is {SCHEMA_VERSION}" in err, err
    assert pg_ledger.sql("SELECT version FROM schema_version") == [(OLDER,)]
    assert pg_ledger.tables() == tables


def test_a_read_only_postgresql_store_reads_a_current_ledger_and_writes_nothing(
    pg_ledger: PgLedger,
) -> None:
    PostgresLedgerStore(pg_ledger.url).close()
    store = PostgresLedgerStore(pg_ledger.url, read_only=True)
    _reads_the_version_and_writes_nothing(store)
    pg_ledger.sql("DELETE FROM schema_version")
    with pytest.raises(SchemaError, match="no ledger here"):
        PostgresLedgerStore(pg_ledger.url, read_only=True)
    pg_ledger.sql("INSERT INTO schema_version VALUES (0), (0)")
    with pytest.raises(SchemaError, match="damaged"):
        PostgresLedgerStore(pg_ledger.url, read_only=True)
