"""The index a reversal finds its original capture or credit by.

A test that pins a query plan is brittle by design; this one guards an index choice that
a bound parameter silently lost: ``transfers_by_request`` is partial (captures and
credits only), and from ``kind = ?`` alone neither planner can tell that the row it looks
for is in it, so SQLite walked every transfer of the hold instead.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, SqliteLedgerStore, settlement
from tests.gateway.ledger.ledger_support import PgCluster


def test_sqlite_finds_the_original_by_its_request(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    SqliteLedgerStore(path).close()
    conn = sqlite3.connect(path)
    try:
        plan = " | ".join(
            str(row[3])
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN {settlement._ORIGINAL}", ("hold", "capture", b"rrpid")
            )
        )
    finally:
        conn.close()
    assert "SEARCH t USING INDEX transfers_by_request" in plan, plan


@pytest.mark.parametrize("kind", ["capture", "credit"])
def test_postgres_finds_the_original_by_its_request(pg_cluster: PgCluster, kind: str) -> None:
    conninfo = pg_cluster.new_schema()
    PostgresLedgerStore(conninfo).close()
    numbered = iter(range(1, 4))
    query = re.sub(r"\?", lambda _: f"${next(numbered)}", settlement._ORIGINAL)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # The plan the store's prepared statement gets once PostgreSQL stops planning it
        # per call (a generic plan knows no parameter's value); with empty tables a scan
        # would win on cost, so scans are priced out to show which index could serve.
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("SET enable_seqscan = off")
        conn.execute(f"PREPARE original(text, text, bytea) AS {query}".encode())
        rows = conn.execute(
            f"EXPLAIN EXECUTE original('hold', '{kind}', '\\x00'::bytea)".encode()
        ).fetchall()
    plan = " | ".join(str(row[0]) for row in rows)
    assert "transfers_by_request" in plan, plan
