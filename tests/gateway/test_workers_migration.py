"""``setpay gateway serve --workers N`` on a ledger of an older schema: the supervisor
migrates it once, before any worker starts, however long that takes.

The test runs the real command in a subprocess through ``slow_migration_serve``, whose
migration holds SQLite's write lock past the busy timeout, and talks to the bank over
real mutual TLS with the actors of ``actors.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.ledger.schema import MIGRATIONS, POSTGRES, SCHEMA_VERSION, SQLITE, Dialect
from setcore.authorization import open_auth_response
from setpay.v1 import authorization_pb2 as a

from .actors import auth_request, purchase, register_cardholder, register_merchant
from .ledger.ledger_support import TEST_DATABASE, PgCluster, throwaway_pg_cluster
from .served import ServedBank, ledger_process_of, mapped_files, serve_bank, threads_of, workers_of

SLOW_MIGRATION = ("tests.gateway.slow_migration_serve",)

# The release whose ledger the bank is upgraded from: the one before retention's indexes.
OLD_VERSION = 3


def _ledger(directory: Path) -> Path:
    return directory / "ledger.db"


def _version(directory: Path) -> int:
    with contextlib.closing(sqlite3.connect(_ledger(directory))) as conn:
        (version,) = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(version)


def _old_schema(dialect: Dialect) -> list[str]:
    """The statements the release of OLD_VERSION ran to create its ledger."""
    return [
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        *(s.format(**dataclasses.asdict(dialect)) for m in MIGRATIONS[:OLD_VERSION] for s in m),
        f"INSERT INTO schema_version (version) VALUES ({OLD_VERSION})",
    ]


def _at_old_version(directory: Path) -> None:
    """The bank's SQLite ledger as the release of OLD_VERSION created it."""
    for name in ("", "-wal", "-shm"):
        Path(f"{_ledger(directory)}{name}").unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(_ledger(directory), isolation_level=None)) as conn:
        for statement in _old_schema(SQLITE):
            conn.execute(statement)
    _ledger(directory).chmod(0o600)


def _approves(bank: ServedBank) -> None:
    """One purchase authorized through the bank, approved."""
    merchant = register_merchant(bank.world, "M-migrated-1")
    cardholder = register_cardholder(bank.world, limit=10_000)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 100))
    result = open_auth_response(
        bank.channel().Authorize(request, timeout=30), merchant.credentials, state,
        merchant.trust, gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    code = result.data.auth_res_payload.auth_header.auth_code
    assert a.AuthCode.Name(code) == "AUTH_CODE_APPROVED"


def _held_by(pid: int, directory: Path) -> list[str]:
    """The ledger's files (database, -wal, -shm, write lock) process ``pid`` has open."""
    ledger = str(_ledger(directory))
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            held.append(os.readlink(fd))
    return [name for name in held if name.startswith(ledger)]


# The SQLite ledger written by a writer thread in each worker, or by one ledger process.
LEDGER_MODES = {"ledger-process": "1", "writer-per-worker": "0"}


@pytest.mark.parametrize("mode", sorted(LEDGER_MODES))
def test_an_upgraded_ledger_is_migrated_by_the_supervisor_before_any_child_starts(
    tmp_path: Path, mode: str
) -> None:
    assert OLD_VERSION < SCHEMA_VERSION
    # Before, with a writer per worker, both workers opened the old ledger at once: one
    # migrated under the write lock, the other gave up after SQLite's busy timeout
    # ("worker N cannot serve: StoreUnavailable: SQLite is unavailable (SQLITE_BUSY)")
    # and the bank stopped. The ledger process migrated alone, but within its start
    # allowance ("the ledger process was not serving after 8 s").
    bank = serve_bank(
        tmp_path, workers=2, metrics=False, prepare=_at_old_version, command=SLOW_MIGRATION,
        extra_env={"SETPAY_LEDGER_SERVICE": LEDGER_MODES[mode]},
    )  # fmt: skip
    with contextlib.closing(bank):
        assert _version(bank.directory) == SCHEMA_VERSION
        assert len(workers_of(bank.process.pid)) == 2
        assert len(ledger_process_of(bank.process.pid)) == int(LEDGER_MODES[mode])
        _approves(bank)
        # The supervisor kept nothing of the store it opened: no thread, no descriptor,
        # no mapping of the WAL index that its children could inherit.
        assert threads_of(bank.process.pid) == 1
        assert _held_by(bank.process.pid, bank.directory) == []
        assert str(_ledger(bank.directory)) not in mapped_files(bank.process.pid)
        assert bank.stop() == 0, bank.log()


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as cluster:
        yield cluster


def test_an_upgraded_postgresql_ledger_is_migrated_before_the_workers_start(
    tmp_path: Path, pg: PgCluster
) -> None:
    # Before, the workers took turns on the migration's advisory lock, and the first one's
    # migration counted against its start allowance ("worker N was not serving after
    # 8 s"): on a big ledger, the bank did not start.
    schema = f"ledger_{tmp_path.name}".lower().replace("-", "_")
    with psycopg.connect(pg.conninfo(TEST_DATABASE), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
        conn.execute(f'SET search_path TO "{schema}"'.encode())
        for statement in _old_schema(POSTGRES):
            conn.execute(statement.encode())
    query = urllib.parse.urlencode(
        {"host": str(pg.root), "port": pg.port, "options": f"-c search_path={schema}"},
        quote_via=urllib.parse.quote,  # %20 for a space: libpq reads no "+" as one
    )
    url = f"postgresql://ledger@/{TEST_DATABASE}?{query}"

    def on_postgresql(directory: Path) -> None:
        config = directory / "setpay.toml"
        text = config.read_text()
        assert 'store = "sqlite:ledger.db"' in text
        config.write_text(text.replace('store = "sqlite:ledger.db"', f'store = "{url}"'))

    bank = serve_bank(
        tmp_path, workers=2, metrics=False, prepare=on_postgresql, command=SLOW_MIGRATION
    )
    with contextlib.closing(bank):
        with psycopg.connect(pg.conninfo(TEST_DATABASE, schema)) as conn:
            row = conn.execute(b"SELECT version FROM schema_version").fetchone()
        assert row == (SCHEMA_VERSION,)
        assert len(workers_of(bank.process.pid)) == 2
        _approves(bank)
        assert threads_of(bank.process.pid) == 1
        assert bank.stop() == 0, bank.log()
