"""The limit of the ledger key check that init cannot close: a PostgreSQL ledger,
configured after init, gets its key check at its first open, and nothing but being first
binds the keys of that open (a ledger.keys forged before it is its keys). init binds the
default SQLite ledger itself (``test_ledger_keys_binding``)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.config import BankConfig, load
from gateway.issuer import open_ledger
from gateway.ledger import LedgerKeys, UnknownAccount
from gateway.provisioning import init_bank
from tests.cards import card

from .key_binding_support import forge_sealed_file
from .ledger.ledger_support import TEST_DATABASE, PgCluster, throwaway_pg_cluster
from .ledger_keys_support import held_keys

PANS = [card("499999", serial) for serial in (53, 54)]


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as cluster:
        yield cluster


def _bank_on_postgresql(directory: Path, pg: PgCluster) -> BankConfig:
    """A new bank whose ledger is then configured to be a new PostgreSQL schema."""
    init_bank(directory, profile="ec", env={})
    schema = f"ledger_{directory.parent.name}".lower().replace("-", "_")
    with psycopg.connect(pg.conninfo(TEST_DATABASE), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    query = urllib.parse.urlencode(
        {"host": str(pg.root), "port": pg.port, "options": f"-c search_path={schema}"},
        quote_via=urllib.parse.quote,  # %20 for a space: libpq reads no "+" as one
    )
    url = f"postgresql://ledger@/{TEST_DATABASE}?{query}"
    return load(directory / "setpay.toml", env={"SETPAY_LEDGER": url})


def test_a_forged_file_before_the_first_open_of_a_postgresql_ledger_is_its_keys(
    tmp_path: Path, pg: PgCluster
) -> None:
    config = _bank_on_postgresql(tmp_path / "bank", pg)
    chosen = LedgerKeys.generate()
    forge_sealed_file(config, chosen)
    assert held_keys(config) == chosen
    ledger = open_ledger(config)
    try:
        account = ledger.open_card_account(PANS[0], "203012", 5000, 978).account_id
        assert ledger.find_card_account(PANS[0]).account_id == account
        with pytest.raises(UnknownAccount):
            ledger.find_card_account(PANS[1])
    finally:
        ledger.close()
