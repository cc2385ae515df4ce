"""The index a reversal finds its original capture or credit by.

A test that pins a query plan is brittle by design; this one guards an index choice that
a bound parameter silently lost: ``transfers_by_request`` is partial (captures and
credits only), and from ``kind = ?`` alone neither planner can tell that the row it looks
for is in it, so SQLite walked every transfer of the hold instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ledger import PostgresLedgerStore, SqliteLedgerStore
from tests.gateway.ledger.ledger_support import PgCluster
from tests.gateway.ledger.plan_support import (
    ORIGINAL_KINDS,
    postgres_original_plan,
    sqlite_original_plan,
)


def test_sqlite_finds_the_original_by_its_request(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    SqliteLedgerStore(path).close()
    plan = sqlite_original_plan(path)
    assert "SEARCH t USING INDEX transfers_by_request" in plan, plan


@pytest.mark.parametrize("kind", ORIGINAL_KINDS)
def test_postgres_finds_the_original_by_its_request(pg_cluster: PgCluster, kind: str) -> None:
    conninfo = pg_cluster.new_schema()
    PostgresLedgerStore(conninfo).close()
    plan = postgres_original_plan(conninfo, kind)
    assert "transfers_by_request" in plan, plan
