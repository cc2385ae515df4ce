"""Each PostgreSQL connection of the store asks the kernel to give it up when the server
goes silent: its host died, a failover left its address dead, the network parted.

Such a server resets nothing. Without a TCP user timeout and keepalives, a statement sent
on a connection to it (the BEGIN of the next transaction on an idle pooled one) waits for
the kernel's own retransmissions to end, some fifteen minutes, holding its pool slot: a
pool of such connections stops the bank that long, long after the failover is done. The
silence itself cannot be made here (the test cluster listens on a Unix socket, and a live
kernel acknowledges whatever a stopped server is sent), so these tests read what each real
connection was opened with, as libpq reports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore
from gateway.ledger.postgres import (
    KEEPALIVE_IDLE_SECONDS,
    STATEMENT_TIMEOUT_MS,
    TCP_USER_TIMEOUT_MS,
)
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import TEST_DATABASE, PgCluster


def _connections_opened(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The parameters, as libpq holds them, of every connection psycopg opens from now on
    (each a real one, to the test cluster)."""
    opened: list[dict[str, str]] = []
    real_connect = psycopg.connect

    def connect(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        conn = real_connect(*args, **kwargs)
        opened.append(conn.info.get_parameters())
        return conn

    monkeypatch.setattr(psycopg, "connect", connect)
    return opened


def _setting(parameters: dict[str, str], name: str) -> int:
    """A numeric parameter the connection was opened with (0: not given)."""
    return int(parameters.get(name) or 0)


def _one(tx: Transaction) -> object:
    return tx.one("SELECT 1 AS one")


def test_each_connection_gives_up_a_silent_server(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    conninfo = pg_cluster.new_schema()
    opened = _connections_opened(monkeypatch)
    store = PostgresLedgerStore(conninfo)
    try:
        store.execute(_one)
        store.read(_one)
        assert opened
        for parameters in opened:
            # Keepalives on (libpq's default, which a "0" would turn off): the probes below.
            assert parameters.get("keepalives", "1") == "1"
            # Data unacknowledged this long gives the connection up: a silent server is
            # left within the statement timeout, not the kernel's quarter of an hour.
            assert 0 < _setting(parameters, "tcp_user_timeout") <= STATEMENT_TIMEOUT_MS
            # A quiet connection (idle in the pool, or waiting for a statement) to a dead
            # server is found within the statement timeout too.
            found_after_s = _setting(parameters, "keepalives_idle") + _setting(
                parameters, "keepalives_interval"
            ) * _setting(parameters, "keepalives_count")
            assert 0 < found_after_s <= STATEMENT_TIMEOUT_MS / 1000
    finally:
        store.close()


def test_a_connection_string_keeps_its_own_liveness_settings(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator's word wins: a keyword argument would override the string's value.
    conninfo = pg_cluster.new_schema() + " tcp_user_timeout=1234 keepalives_idle=42"
    opened = _connections_opened(monkeypatch)
    store = PostgresLedgerStore(conninfo)
    try:
        store.execute(_one)
        assert opened
        for parameters in opened:
            assert parameters.get("tcp_user_timeout") == "1234"
            assert parameters.get("keepalives_idle") == "42"
            # What the string leaves out is still given.
            assert _setting(parameters, "keepalives_interval") > 0
    finally:
        store.close()


def test_a_url_as_the_configuration_gives_it_gets_them_too(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``ledger.store`` is a postgresql:// URL: the settings are merged into it, not
    # appended to it as text.
    conninfo = pg_cluster.new_schema()  # a schema of its own for the search path
    schema = conninfo.split("search_path=")[1].rstrip("'")
    url = (
        f"postgresql://ledger@/{TEST_DATABASE}?host={quote(str(pg_cluster.root), safe='')}"
        f"&port={pg_cluster.port}&options={quote(f'-c search_path={schema}', safe='')}"
    )
    opened = _connections_opened(monkeypatch)
    store = PostgresLedgerStore(url)
    try:
        assert store.read(lambda tx: tx.one("SELECT current_schema() AS s")) == {"s": schema}
        assert opened
        for parameters in opened:
            assert 0 < _setting(parameters, "tcp_user_timeout") <= STATEMENT_TIMEOUT_MS
    finally:
        store.close()


def test_a_service_files_liveness_settings_give_way_to_the_stores(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As the store's docstring says: only the connection string itself keeps its own.
    conninfo = pg_cluster.new_schema()
    services = tmp_path / "pg_service.conf"
    services.write_text("[ledgersvc]\ntcp_user_timeout=1234\nkeepalives_idle=42\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    opened = _connections_opened(monkeypatch)
    store = PostgresLedgerStore(conninfo + " service=ledgersvc")
    try:
        store.execute(_one)
        assert opened
        for parameters in opened:
            assert parameters.get("tcp_user_timeout") == str(TCP_USER_TIMEOUT_MS)
            assert parameters.get("keepalives_idle") == str(KEEPALIVE_IDLE_SECONDS)
    finally:
        store.close()
