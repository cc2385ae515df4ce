"""Fixtures for the ledger tests: a throwaway PostgreSQL cluster, both stores, a clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import CommitStats, Ledger, LedgerConfig, LedgerKeys
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PAN_B,
    Backend,
    Bank,
    FakeClock,
    PgCluster,
    ServedSqliteStore,
    postgres_backend,
    served_sqlite_backend,
    sqlite_backend,
    throwaway_pg_cluster,
)
from tests.gateway.ledger.retention_support import DAYS


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """Start a PostgreSQL cluster in a temporary directory for the whole session."""
    with throwaway_pg_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "sqlite-service", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each contract test runs once per store, and once over the ledger service."""
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "ledger.db")
    if request.param == "sqlite-service":
        return served_sqlite_backend(tmp_path / "ledger.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return postgres_backend(cluster.new_schema())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedSqliteStore]:
    """A SQLite store behind a ledger service in this process, used over its socket."""
    store = ServedSqliteStore(tmp_path / "ledger.db")
    yield store
    store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys() -> LedgerKeys:
    return LedgerKeys.generate()


@pytest.fixture
def commits() -> list[CommitStats]:
    """Every commit the ``ledger`` fixture's store reports."""
    return []


@pytest.fixture
def ledger(
    backend: Backend, keys: LedgerKeys, clock: FakeClock, commits: list[CommitStats]
) -> Iterator[Ledger]:
    """A ledger on a fresh database; its books must balance when the test ends."""
    led = Ledger(backend.open_store(observer=commits.append), keys, clock=clock)
    yield led
    led.check_balanced()
    led.close()


@pytest.fixture
def bank(ledger: Ledger) -> Bank:
    """A ledger with merchant MERCHANT (EUR) and cards PAN_A (limit 10000) and PAN_B (5000)."""
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
    ledger.open_card_account(PAN_B, EXPIRY, 5_000, EUR)
    return Bank(ledger)


@pytest.fixture
def retaining(backend: Backend, keys: LedgerKeys, clock: FakeClock) -> Iterator[Ledger]:
    """A second ledger on the fixture's database, as a bank given ``retention_days`` opens
    it (``gateway.issuer.open_ledger``): the one its sweeper runs on."""
    opened = Ledger(
        backend.open_store(), keys, clock=clock, config=LedgerConfig(retention_days=DAYS)
    )
    yield opened
    opened.close()
