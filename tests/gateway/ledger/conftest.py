"""Fixtures for the ledger tests: a throwaway PostgreSQL cluster, both stores, a clock."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.ledger import CommitStats, Ledger, LedgerKeys
from tests.gateway.ledger.ledger_support import (
    CLUSTER_PORT,
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PAN_B,
    PG_CTL_TIMEOUT_SECONDS,
    TEST_DATABASE,
    Backend,
    Bank,
    FakeClock,
    PgCluster,
    find_pg_bindir,
    postgres_backend,
    served_sqlite_backend,
    sqlite_backend,
)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """Start a PostgreSQL cluster in a temporary directory for the whole session."""
    bindir = find_pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="setpay-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    cluster = PgCluster(bindir=bindir, root=root, port=CLUSTER_PORT, run_as=run_as)
    try:
        subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(cluster.data),
                "-U",
                "ledger",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # the cluster's own bootstrap; the server itself runs with fsync on
            ],
            check=True,
            capture_output=True,
            timeout=PG_CTL_TIMEOUT_SECONDS,
        )
        options = f"-k {root} -p {cluster.port} -c listen_addresses='' -c fsync=on"
        cluster.pg_ctl("-l", str(root / "server.log"), "-w", "-o", options, "start")
        with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{TEST_DATABASE}"'.encode())
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')}")
    try:
        yield cluster
    finally:
        try:
            cluster.pg_ctl("-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)


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
