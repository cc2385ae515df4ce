"""A connection PostgreSQL refuses: the operator is told why, and never the password.

A wrong password, an unknown role or database, no server there: each is an outage
(UNAVAILABLE, the merchant resends), and each used to say the same, "PostgreSQL is
unavailable (OperationalError, SQLSTATE none)", at the bank's start and in every
`setpay bank` command, while a serving bank whose password was changed under it said
nothing at all (its requests are logged "database unavailable" without a reason). Now
the error names libpq's reason, and the store logs it, each reason at once and then at
most once a minute. A reason that would quote a password (a URL's unescaped @ or /, a
database named like it, a password equal to the role's name or a single letter) is
withheld whole: blotting the password out of it gave the password away.

The cluster here is this module's own: it asks one role for a password, which the
session's cluster (trust for every role) never does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, StoreAway, StoreUnavailable
from gateway.ledger.postgres_refusals import REASON_WITHHELD
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


def test_a_refusal_lasts_and_no_server_there_is_the_server_away(own_cluster: PgCluster) -> None:
    """A worker's replacement meeting the server away is started again; one meeting a
    refusal stops the bank (``gateway.child``): started again, it would be refused again,
    for ever. Its reason withheld, a refusal lasts all the same."""
    refused = [
        _teller(own_cluster, OTHER_PASSWORD),
        _teller(own_cluster, TELLER),  # its reason withheld
        _teller(own_cluster, PASSWORD, dbname="no_such_ledger"),
        f"host={own_cluster.root} port={own_cluster.port} user=no_such_role",
    ]
    for conninfo in refused:
        with pytest.raises(StoreUnavailable) as raised:
            PostgresLedgerStore(conninfo)
        assert not isinstance(raised.value, StoreAway), raised.value
    nowhere = f"host={own_cluster.root / 'nowhere'} port={own_cluster.port} user=ledger"
    with pytest.raises(StoreAway):
        PostgresLedgerStore(nowhere + f" password={PASSWORD} dbname={TEST_DATABASE}")


WITHHELD = f"PostgreSQL is unavailable (cannot connect: {REASON_WITHHELD})"


def test_a_reason_that_would_quote_the_password_is_withheld(own_cluster: PgCluster) -> None:
    # The server quotes the database name, which is the password too (the trusted role's
    # password is not asked).
    conninfo = own_cluster.conninfo(OTHER_PASSWORD) + f" password={OTHER_PASSWORD}"
    assert _refusal(conninfo) == WITHHELD


def test_a_password_equal_to_the_role_name_withholds_the_reason(own_cluster: PgCluster) -> None:
    # Blotted out, it showed as 'user "(password)"': the password given away.
    assert _refusal(_teller(own_cluster, TELLER)) == WITHHELD


def test_a_one_letter_password_withholds_the_reason(own_cluster: PgCluster) -> None:
    # Blotted out, every word lost its "e": the password given away.
    assert _refusal(_teller(own_cluster, "e")) == WITHHELD


def test_a_urls_password_cut_by_an_unescaped_at_is_withheld() -> None:
    # libpq takes "Kq7" for the password and "teller-pw@..." for the host, and names the
    # host it cannot find: the password's tail.
    said = _refusal(f"postgresql://{TELLER}:Kq7@teller-pw@nowhere.invalid:5432/ledger")
    assert said == WITHHELD


def test_a_urls_password_cut_by_an_unescaped_slash_is_withheld(own_cluster: PgCluster) -> None:
    # libpq finds no user info (a / comes before the @), takes "teller:Kq7" for the host
    # and its port, and names the port it cannot read: the password's head.
    sock = quote(str(own_cluster.root), safe="")
    said = _refusal(f"postgresql://{TELLER}:Kq7/teller-pw@/{TEST_DATABASE}?host={sock}")
    assert said == WITHHELD


def test_a_urls_role_name_is_no_secret(own_cluster: PgCluster) -> None:
    # Only what follows the user name in the URL's user info is taken for a password.
    sock = quote(str(own_cluster.root), safe="")
    where = f"/{TEST_DATABASE}?host={sock}&port={own_cluster.port}"
    said = _refusal(f"postgresql://{TELLER}:{OTHER_PASSWORD}@{where}")
    assert f'password authentication failed for user "{TELLER}"' in said
    assert OTHER_PASSWORD not in said


def test_a_password_from_pgpassword_withholds_the_reason(
    own_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", OTHER_PASSWORD)
    assert _refusal(own_cluster.conninfo(OTHER_PASSWORD)) == WITHHELD
    # A host psycopg cannot resolve fails before libpq reads the environment.
    assert _refusal(f"host={OTHER_PASSWORD}.invalid port=5432 user=ledger") == WITHHELD


def test_a_password_from_a_service_file_withholds_the_reason(
    own_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    services = tmp_path / "pg_service.conf"
    services.write_text(
        f"[ledgersvc]\nhost={own_cluster.root}\nport={own_cluster.port}\nuser=ledger\n"
        f"dbname={OTHER_PASSWORD}\npassword={OTHER_PASSWORD}\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    assert _refusal("service=ledgersvc") == WITHHELD


def test_a_password_from_a_passfile_withholds_the_reason(
    own_cluster: PgCluster, tmp_path: Path
) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:*:{OTHER_PASSWORD}\n")
    passfile.chmod(0o600)
    conninfo = own_cluster.conninfo(OTHER_PASSWORD) + f" passfile={passfile}"
    assert _refusal(conninfo) == WITHHELD


def _one(tx: Transaction) -> object:
    return tx.one("SELECT 1 AS one")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]


def _as_dba(cluster: PgCluster, *statements: str) -> None:
    """Run ``statements``, then end TELLER's sessions (a restart would)."""
    with psycopg.connect(cluster.conninfo(TEST_DATABASE), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())
        conn.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = %s",
            (TELLER,),
        )


@pytest.fixture
def serving(own_cluster: PgCluster) -> Iterator[PostgresLedgerStore]:
    """A store serving as TELLER; closed after, and TELLER's login and password put back
    whatever the test changed."""
    store = PostgresLedgerStore(_teller(own_cluster, PASSWORD))
    try:
        yield store
    finally:
        store.close()
        _as_dba(own_cluster, f"ALTER ROLE {TELLER} LOGIN PASSWORD '{PASSWORD}'")


def test_a_password_changed_under_a_serving_store_is_logged_once_a_minute(
    own_cluster: PgCluster, serving: PostgresLedgerStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = serving
    store.execute(_one)
    # The DBA changes the password and ends the store's sessions (a restart would).
    _as_dba(own_cluster, f"ALTER ROLE {TELLER} PASSWORD '{OTHER_PASSWORD}'")
    with caplog.at_level(logging.WARNING, logger="setpay.ledger"):
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="password authentication failed"):
                store.execute(_one)
    said = _warnings(caplog)
    assert len(said) == 1
    assert f'password authentication failed for user "{TELLER}"' in said[0]
    assert OTHER_PASSWORD not in said[0]
    assert PASSWORD not in said[0]


def test_another_reason_within_the_minute_is_logged_at_once(
    own_cluster: PgCluster, serving: PostgresLedgerStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = serving
    store.execute(_one)
    _as_dba(own_cluster, f"ALTER ROLE {TELLER} PASSWORD '{OTHER_PASSWORD}'")
    with caplog.at_level(logging.WARNING, logger="setpay.ledger"):
        for _ in range(2):
            with pytest.raises(StoreUnavailable, match="password authentication failed"):
                store.execute(_one)
        # The password put back, the role may no longer log in: another reason.
        _as_dba(own_cluster, f"ALTER ROLE {TELLER} NOLOGIN PASSWORD '{PASSWORD}'")
        for _ in range(2):
            with pytest.raises(StoreUnavailable, match="not permitted to log in"):
                store.execute(_one)
    said = _warnings(caplog)
    assert len(said) == 2
    assert "password authentication failed" in said[0]
    assert "not permitted to log in" in said[1]


def test_a_refusal_after_a_connection_opened_is_logged_at_once(
    own_cluster: PgCluster, serving: PostgresLedgerStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = serving
    with caplog.at_level(logging.WARNING, logger="setpay.ledger"):
        for _ in range(2):  # refused, then served again, within the minute
            _as_dba(own_cluster, f"ALTER ROLE {TELLER} PASSWORD '{OTHER_PASSWORD}'")
            with pytest.raises(StoreUnavailable, match="password authentication failed"):
                store.execute(_one)
            _as_dba(own_cluster, f"ALTER ROLE {TELLER} PASSWORD '{PASSWORD}'")
            store.execute(_one)
    said = _warnings(caplog)
    assert len(said) == 2
    assert all("password authentication failed" in line for line in said)
