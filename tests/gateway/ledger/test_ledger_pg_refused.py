"""A connection PostgreSQL refuses: the operator is told why, and never the password.

A wrong password, an unknown role or database, no server there: each is an outage
(UNAVAILABLE, the merchant resends), and each used to say the same, "PostgreSQL is
unavailable (OperationalError, SQLSTATE none)", at the bank's start and in every
`setpay bank` command, while a serving bank whose password was changed under it said
nothing at all (its requests are logged "database unavailable" without a reason). Now
the error names libpq's reason, and the store logs it, at most once a minute.

The cluster here is this module's own: it asks one role for a password, which the
session's cluster (trust for every role) never does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, StoreUnavailable
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import TEST_DATABASE, PgCluster, throwaway_pg_cluster

# The role that logs in with a password, and its password. Both read as no word a
# message would hold by chance.
TELLER = "teller"
PASSWORD = "Kq7-teller-pw"
OTHER_PASSWORD = "Wz4-other-pw"


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PgCluster]:
    """A cluster whose role TELLER logs in with PASSWORD (SCRAM), the rest trusted."""
    with throwaway_pg_cluster() as cluster:
        with psycopg.connect(cluster.conninfo(TEST_DATABASE), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {TELLER} LOGIN PASSWORD '{PASSWORD}'".encode())
            # Its own schema, first on its search path ("$user"): PUBLIC may not create
            # tables in the public schema.
            conn.execute(f"CREATE SCHEMA {TELLER} AUTHORIZATION {TELLER}".encode())
        hba = cluster.data / "pg_hba.conf"
        hba.write_text(f"local all {TELLER} scram-sha-256\n" + hba.read_text())
        cluster.pg_ctl("reload")
        yield cluster


def _teller(cluster: PgCluster, password: str, dbname: str = TEST_DATABASE) -> str:
    where = f"host={cluster.root} port={cluster.port} dbname={dbname}"
    return f"{where} user={TELLER} password={password}"


def _refusal(conninfo: str) -> str:
    with pytest.raises(StoreUnavailable) as raised:
        PostgresLedgerStore(conninfo)
    assert isinstance(raised.value.__cause__, psycopg.OperationalError)
    return str(raised.value)


def test_a_wrong_password_is_named_and_not_quoted(own_cluster: PgCluster) -> None:
    said = _refusal(_teller(own_cluster, OTHER_PASSWORD))
    assert said.startswith("PostgreSQL is unavailable (cannot connect: ")
    assert f'password authentication failed for user "{TELLER}"' in said
    assert OTHER_PASSWORD not in said
    assert PASSWORD not in said


def test_an_unknown_database_is_named(own_cluster: PgCluster) -> None:
    said = _refusal(_teller(own_cluster, PASSWORD, dbname="no_such_ledger"))
    assert 'database "no_such_ledger" does not exist' in said


def test_no_server_there_is_named(own_cluster: PgCluster) -> None:
    conninfo = f"host={own_cluster.root / 'nowhere'} port={own_cluster.port} user=ledger"
    said = _refusal(conninfo + f" password={PASSWORD} dbname={TEST_DATABASE}")
    assert "No such file or directory" in said
    assert PASSWORD not in said


def test_a_password_the_reason_would_quote_is_blotted_out(own_cluster: PgCluster) -> None:
    # The guard, should a message ever quote a password: here the server quotes the
    # database name, which is the password too (the trusted role's password is not asked).
    conninfo = own_cluster.conninfo(OTHER_PASSWORD) + f" password={OTHER_PASSWORD}"
    said = _refusal(conninfo)
    assert 'database "(password)" does not exist' in said
    assert OTHER_PASSWORD not in said


def _one(tx: Transaction) -> object:
    return tx.one("SELECT 1 AS one")


def test_a_password_changed_under_a_serving_store_is_logged_once_a_minute(
    own_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresLedgerStore(_teller(own_cluster, PASSWORD))
    try:
        store.execute(_one)
        # The DBA changes the password and ends the store's sessions (a restart would).
        with psycopg.connect(own_cluster.conninfo(TEST_DATABASE), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {TELLER} PASSWORD '{OTHER_PASSWORD}'".encode())
            conn.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = %s",
                (TELLER,),
            )
        with caplog.at_level(logging.WARNING, logger="setpay.ledger"):
            for _ in range(3):
                with pytest.raises(StoreUnavailable, match="password authentication failed"):
                    store.execute(_one)
        said = [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]
        assert len(said) == 1
        assert f'password authentication failed for user "{TELLER}"' in said[0]
        assert OTHER_PASSWORD not in said[0]
        assert PASSWORD not in said[0]
    finally:
        store.close()
        with psycopg.connect(own_cluster.conninfo(TEST_DATABASE), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {TELLER} PASSWORD '{PASSWORD}'".encode())
