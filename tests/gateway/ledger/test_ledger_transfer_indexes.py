"""Version 6: the journal's index by hold is gone, and a hold's transfers are found without it.

``transfers_by_hold`` cost every transfer a B-tree insert and served no statement of the
ledger (``schema._V6``): a reversal finds its original through ``transfers_by_request``,
whose first column is the hold. A ledger of version 5 migrates to one without it, on
either store, with its books intact and its reversals still found by that index.
"""

from __future__ import annotations

from pathlib import Path

from gateway.ledger import (
    Authorized,
    CaptureItem,
    Ledger,
    LedgerKeys,
    Posted,
    PostgresLedgerStore,
    PostingOutcome,
    ReversalItem,
    SqliteLedgerStore,
)
from gateway.ledger.schema import SCHEMA_VERSION
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    Backend,
    Bank,
    FakeClock,
    PgCluster,
    postgres_backend,
    sqlite_backend,
)
from tests.gateway.ledger.plan_support import postgres_original_plan, sqlite_original_plan

DROPPED = "transfers_by_hold"


def _transfer_indexes(backend: Backend) -> set[str]:
    if backend.name == "postgres":
        sql = (
            "SELECT indexname FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = 'transfers'"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transfers'"
    return {str(row[0]) for row in backend.raw_query(sql)}


def _as_version_5(backend: Backend) -> None:
    """Make the ledger what version 5 left: the index by hold (built over the rows the
    ledger holds, as version 5 kept it), none of version 8's columns, and its version
    record."""
    backend.raw_execute(f"CREATE INDEX IF NOT EXISTS {DROPPED} ON transfers (hold_id)")
    backend.raw_execute("ALTER TABLE requests DROP COLUMN settled_reason")
    backend.raw_execute("ALTER TABLE requests DROP COLUMN settled_at_ms")
    backend.raw_execute("UPDATE schema_version SET version = 5")


def _a_ledger_of_version_5(backend: Backend, keys: LedgerKeys, clock: FakeClock) -> str:
    """A version 5 ledger with a captured hold (its capture under RRPID ``cap-1``); its id."""
    bank = Bank(Ledger(backend.open_store(), keys, clock=clock))
    try:
        bank.ledger.open_merchant_account(MERCHANT, EUR)
        bank.ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
        auth = bank.authorize(PAN_A, 3000)
        assert isinstance(auth, Authorized), auth
        captured = bank.call(
            bank.ledger.capture,
            merchant_id=MERCHANT,
            items=[CaptureItem(auth.hold_id, 1000, EUR)],
            rrpid=b"cap-1",
        )
        assert isinstance(captured, PostingOutcome), captured
    finally:
        bank.ledger.close()
    _as_version_5(backend)
    assert DROPPED in _transfer_indexes(backend)
    return auth.hold_id


def test_a_new_ledger_has_no_index_by_hold(backend: Backend) -> None:
    backend.open_store().close()
    indexes = _transfer_indexes(backend)
    assert DROPPED not in indexes, indexes
    assert "transfers_by_request" in indexes, indexes


def test_a_version_5_ledger_migrates_without_the_index_and_keeps_its_books(
    backend: Backend, keys: LedgerKeys, clock: FakeClock
) -> None:
    hold_id = _a_ledger_of_version_5(backend, keys, clock)
    bank = Bank(Ledger(backend.open_store(), keys, clock=clock))
    try:
        indexes = _transfer_indexes(backend)
        assert DROPPED not in indexes, indexes
        assert backend.raw_query("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        assert SCHEMA_VERSION >= 6
        # The capture made under version 5 is found for its reversal, once.
        reversed_ = bank.call(
            bank.ledger.reverse_capture,
            merchant_id=MERCHANT,
            items=[ReversalItem(hold_id, b"cap-1")],
        )
        assert isinstance(reversed_, PostingOutcome), reversed_
        (undone,) = reversed_.items
        assert isinstance(undone, Posted) and undone.amount == 1000, undone
        card = bank.ledger.find_card_account(PAN_A)
        assert (card.posted_debt, card.pending) == (0, 2000)
        bank.ledger.check_balanced()
    finally:
        bank.ledger.close()


def test_sqlite_finds_a_migrated_ledgers_original_by_its_request(
    tmp_path: Path, keys: LedgerKeys, clock: FakeClock
) -> None:
    path = tmp_path / "ledger.db"
    _a_ledger_of_version_5(sqlite_backend(path), keys, clock)
    SqliteLedgerStore(path).close()  # migrates
    plan = sqlite_original_plan(path)
    assert "SEARCH t USING INDEX transfers_by_request (hold_id=?" in plan, plan


def test_postgres_finds_a_migrated_ledgers_original_by_its_request(
    pg_cluster: PgCluster, keys: LedgerKeys, clock: FakeClock
) -> None:
    conninfo = pg_cluster.new_schema()
    _a_ledger_of_version_5(postgres_backend(conninfo), keys, clock)
    PostgresLedgerStore(conninfo).close()  # migrates
    plan = postgres_original_plan(conninfo, "capture")
    assert "transfers_by_request" in plan, plan
    assert DROPPED not in plan, plan
