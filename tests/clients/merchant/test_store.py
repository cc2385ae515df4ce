"""The merchant's SQLite file: durability settings, schema versions, what spans its
domains (``postpone``), and failures of the file itself. Orders: ``test_order_store``;
operations and batch changes: ``test_settlement_store``."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from clients.errors import StoreError
from clients.merchant.order_store import OFFER_ORDERS_SQL
from clients.merchant.records import OperationKind, OperationState, OrderState
from clients.merchant.schema import SCHEMA_VERSION
from clients.merchant.store import (
    _WAITING_SQL,
    _WAITING_STATES,
    MerchantStore,
    Waiting,
    WaitingRequests,
)
from tests.clients.merchant.store_support import EUR, batch_request, full_scans, purchased

# The columns version 4 added, by table.
_VERSION_4_COLUMNS = {
    table: ("unverified", "retry_after_ms") for table in ("orders", "operations", "batch_requests")
}


def _back_to_version_8(conn: sqlite3.Connection) -> None:
    """Make a file of this setpay one of version 8, as a setpay of then wrote it."""
    conn.execute("DROP INDEX IF EXISTS orders_by_offer")
    conn.execute("PRAGMA user_version=8")


def _back_to_version_7(conn: sqlite3.Connection) -> None:
    """Make a file of this setpay one of version 7, as a setpay of then wrote it."""
    _back_to_version_8(conn)
    for table in ("orders", "operations", "batch_requests"):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN unreadable")
    conn.execute("PRAGMA user_version=7")


def _back_to_version_6(conn: sqlite3.Connection) -> None:
    """Make a file of this setpay one of version 6, as a setpay of then wrote it."""
    _back_to_version_7(conn)
    conn.execute("ALTER TABLE orders DROP COLUMN signer_thumb")
    conn.execute("PRAGMA user_version=6")


def _back_to_version_5(conn: sqlite3.Connection) -> None:
    """Make a file of this setpay one of version 5, as a setpay of then wrote it."""
    _back_to_version_6(conn)
    conn.execute("DROP INDEX IF EXISTS operations_sent")
    conn.execute("DROP INDEX IF EXISTS batch_requests_sent")
    conn.execute("PRAGMA user_version=5")


def _back_to_version_4(conn: sqlite3.Connection) -> None:
    """Make a file of this setpay one of version 4, as a setpay of then wrote it."""
    _back_to_version_5(conn)
    conn.execute("DROP TABLE gateway_pin")
    conn.execute("PRAGMA user_version=4")


def _back_to_version_3(conn: sqlite3.Connection) -> None:
    """Make a file of this setpay one of version 3, as a setpay of then wrote it."""
    _back_to_version_4(conn)
    for table, columns in _VERSION_4_COLUMNS.items():
        for column in columns:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("PRAGMA user_version=3")


def test_durable_settings_and_schema_version(store: MerchantStore, tmp_path: Path) -> None:
    assert store.settings() == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "schema_version": SCHEMA_VERSION,
    }
    # A second process opening the same file finds the schema and does not recreate it.
    other = MerchantStore(tmp_path / "merchant.db")
    other.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "merchant.db"
    MerchantStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="schema"):
        MerchantStore(path)


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "merchant.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        MerchantStore(path)


def test_a_version_1_file_is_brought_up_to_date(tmp_path: Path) -> None:
    """A file from before operations kept a SET Error's code gets the column; its rows
    keep everything they had."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = purchased(first)
    first.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_3(conn)
        conn.execute("DROP TABLE batch_requests")
        conn.execute("ALTER TABLE operations DROP COLUMN error_code")
        conn.execute("PRAGMA user_version=1")
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 9
        (operation,) = migrated.operations(xid)
        assert (operation.request, operation.state, operation.error_code) == (
            b"req", OperationState.SENT, 0,
        )  # fmt: skip
        assert migrated.fail_operation(operation.rrpid, 8).error_code == 8
    finally:
        migrated.close()


def test_a_version_2_file_gets_the_batch_requests_table(tmp_path: Path) -> None:
    """A file from before batch changes were stored gets their table; the rest stays."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = purchased(first)
    first.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_3(conn)
        conn.execute("DROP TABLE batch_requests")
        conn.execute("PRAGMA user_version=2")
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 9
        assert [op.request for op in migrated.operations(xid)] == [b"req"]
        assert migrated.batch_requests() == []
        assert migrated.add_batch_request(batch_request(b"q" * 32)).state is OperationState.SENT
    finally:
        migrated.close()


def test_a_version_3_file_gets_the_columns_of_answers_that_did_not_verify(
    tmp_path: Path,
) -> None:
    """Its rows keep everything they had, with no answer that did not verify yet."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = purchased(first)
    first.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
    first.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    first.add_batch_request(batch_request(b"q" * 32))
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_3(conn)
    conn.close()
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 9
        order, (operation,), (batch,) = (
            migrated.order(xid),
            migrated.operations(xid),
            migrated.batch_requests(),
        )
        assert (order.auth_request, operation.request, batch.request) == (
            b"auth-req", b"req", b"req",
        )  # fmt: skip
        for waiting in (order, operation, batch):
            assert (waiting.unverified, waiting.retry_after_ms) == (0, 0)
    finally:
        migrated.close()


def test_a_version_4_file_gets_the_gateway_pin_table(tmp_path: Path) -> None:
    """A file from before the gateway pin was kept: its rows stay, and no gateway is
    pinned yet (its next start pins the gateway its first PCertRes names)."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = purchased(first)
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_4(conn)
    conn.close()
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 9
        assert migrated.order(xid).state is OrderState.PURCHASED
        assert migrated.gateway_pin() is None
    finally:
        migrated.close()


def test_a_version_5_file_finds_the_requests_waiting_by_index(tmp_path: Path) -> None:
    """A file from before the sent requests had their own indexes gets them: a metrics
    scrape no longer reads the operations and batch changes whole, request bytes and
    all, and still counts what waits."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = purchased(first)
    first.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    done = first.add_operation(xid, OperationKind.CREDIT, b"s" * 32, EUR, b"req", b"dig")
    first.settle_operation(done.rrpid, True, 1, 1250)
    first.add_batch_request(batch_request(b"q" * 32))
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_5(conn)
        # The same query, but for the column a version 5 file has not got yet.
        then = _WAITING_SQL.replace("unreadable", "unverified")
        assert full_scans(conn, then, _WAITING_STATES) == [
            "SCAN operations", "SCAN batch_requests",
        ]  # fmt: skip
    conn.close()
    migrated = MerchantStore(path)
    waiting = WaitingRequests(path)
    try:
        assert full_scans(migrated._conn, _WAITING_SQL, _WAITING_STATES) == []
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 9
        assert sorted(waiting.counts(), key=lambda w: w.kind) == [
            Waiting("authorization", 1, 0, 0), Waiting("batch", 1, 0, 0),
            Waiting("capture", 1, 0, 0),
        ]  # fmt: skip
    finally:
        waiting.close()
        migrated.close()


def test_a_version_6_file_keeps_its_orders_and_records_who_signs_new_ones(
    tmp_path: Path,
) -> None:
    """An order opened before setpay kept the certificate that signed its PInitRes has
    none (it is authorized under the current one, as then); one opened after has it."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = purchased(first)
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_6(conn)
    conn.close()
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 9
        order = migrated.order(xid)
        assert (order.state, order.signer_thumb) == (OrderState.PURCHASED, None)
        migrated.add_offer(b"lid-2", b"a pen", EUR, "setpay")
        opened = migrated.open_order(b"lid-2", b"y" * 32, b"trans-ids", b"c" * 32, b"s" * 32)
        assert migrated.order(opened.xid).signer_thumb == b"s" * 32
    finally:
        migrated.close()


def test_a_version_7_file_counts_no_unreadable_answer_yet(tmp_path: Path) -> None:
    """A file from before answers of a result code this release cannot read were counted:
    its waiting requests keep their bytes and counts, none with such an answer, and one
    counted now is counted in its row."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = purchased(first)
    order = first.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
    first.postpone(order, 3, 12_345)
    first.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    first.add_batch_request(batch_request(b"q" * 32))
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_7(conn)
    conn.close()
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 9
        order, (operation,), (batch,) = (
            migrated.order(xid), migrated.operations(xid), migrated.batch_requests(),
        )  # fmt: skip
        assert (order.auth_request, order.unverified, order.retry_after_ms) == (
            b"auth-req", 3, 12_345,
        )  # fmt: skip
        for waiting in (order, operation, batch):
            assert waiting.unreadable == 0
        migrated.postpone(operation, 0, 99, unreadable=True)
        assert migrated.operation(operation.rrpid).unreadable == 1
    finally:
        migrated.close()


def test_a_version_8_file_counts_an_offers_orders_by_index(tmp_path: Path) -> None:
    """A file from before an offer's orders were counted at each PInit gets their index:
    counting them no longer reads every order ever taken, and finds those already there."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = purchased(first)
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_8(conn)
        assert full_scans(conn, OFFER_ORDERS_SQL, (b"lid-1",)) == ["SCAN orders"]
    conn.close()
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 9
        assert full_scans(migrated._conn, OFFER_ORDERS_SQL, (b"lid-1",)) == []
        assert migrated._conn.execute(OFFER_ORDERS_SQL, (b"lid-1",)).fetchone() == (1,)
        assert migrated.order(xid).state is OrderState.PURCHASED
    finally:
        migrated.close()


def test_an_unreadable_answer_is_counted_in_the_row_never_from_a_stale_copy(
    store: MerchantStore,
) -> None:
    """Each unreadable answer adds one to what the row holds, whatever the copy the
    sender read; a postpone without one (no answer, one that did not verify) never lowers
    it; and a request that has ended counts none more."""
    xid = purchased(store)
    read = store.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
    store.postpone(read, 0, 1, unreadable=True)
    store.postpone(read, 0, 2, unreadable=True)  # ``read`` still says 0
    store.postpone(read, 4, 3)
    assert (store.order(xid).unreadable, store.order(xid).unverified) == (2, 4)
    operation = store.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    store.postpone(operation, 0, 1, unreadable=True)
    store.settle_operation(operation.rrpid, True, 1, 1250)
    store.postpone(operation, 0, 2, unreadable=True)  # ended: the row no longer waits
    assert store.operation(operation.rrpid).unreadable == 1


def test_a_waiting_request_is_put_off_and_nothing_else_of_it_changes(
    store: MerchantStore,
) -> None:
    """An order authorizing, an operation or a batch change sent keep how many answers in
    a row did not verify and when they are due again; one that has ended is left as it
    is, and an order's renewal clock (``updated_ms``) does not move."""
    xid = purchased(store)
    order = store.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
    operation = store.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    batch = store.add_batch_request(batch_request(b"q" * 32))
    for waiting in (order, operation, batch):
        store.postpone(waiting, 2, 12_345)
    later = store.order(xid)
    assert (later.unverified, later.retry_after_ms, later.updated_ms) == (
        2, 12_345, order.updated_ms,
    )  # fmt: skip
    assert (
        store.operation(operation.rrpid).unverified,
        store.batch_request(b"q" * 32).unverified,
    ) == (2, 2)
    store.settle_operation(operation.rrpid, True, 1, 1250)
    store.postpone(operation, 0, 0)
    assert store.operation(operation.rrpid).retry_after_ms == 12_345


def test_concurrent_writers_from_two_connections(tmp_path: Path) -> None:
    """A CLI process and the server share the file: writes from both land."""
    first, second = MerchantStore(tmp_path / "m.db"), MerchantStore(tmp_path / "m.db")
    try:

        def add(store: MerchantStore, prefix: bytes) -> None:
            for i in range(20):
                store.add_offer(prefix + bytes([i]), b"d", EUR, "setpay")

        threads = [
            threading.Thread(target=add, args=(s, p)) for s, p in ((first, b"a"), (second, b"b"))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert first.offer(b"b\x13").lid_m == b"b\x13"
        assert second.offer(b"a\x00").lid_m == b"a\x00"
    finally:
        first.close()
        second.close()


def test_a_full_disk_is_a_store_error_and_the_store_still_works(store: MerchantStore) -> None:
    """SQLite rolls a transaction back itself when the disk is full: the write is refused
    as a StoreError naming that (UNAVAILABLE to a wallet), not an error about rolling back,
    and the store goes on once there is room."""
    conn = store._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is full from here on
    with pytest.raises(StoreError, match="database or disk is full"):
        for i in range(10):
            store.add_offer(b"lid-%d" % i, b"d" * 4000, EUR, "setpay")
    conn.execute("PRAGMA max_page_count=1073741823")
    assert store.add_offer(b"lid-after", b"d", EUR, "setpay").lid_m == b"lid-after"
