"""The merchant's SQLite store: durability settings, schema version, the order's life."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import ConfigError, OrderStateError, StoreError, UnknownOrder
from clients.merchant.records import (
    Authorization,
    BatchRequest,
    Money,
    OperationKind,
    OperationState,
    OrderState,
)
from clients.merchant.schema import SCHEMA_VERSION
from clients.merchant.store import MerchantStore
from setpay.v1 import gateway_admin_pb2

EUR = Money(978, 1250)
CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE
PURGE = gateway_admin_pb2.BATCH_OPERATION_PURGE


# The columns version 4 added, by table.
_VERSION_4_COLUMNS = {
    table: ("unverified", "retry_after_ms") for table in ("orders", "operations", "batch_requests")
}


def _back_to_version_3(conn: sqlite3.Connection) -> None:
    """Make a file of this setpay one of version 3, as a setpay of then wrote it."""
    for table, columns in _VERSION_4_COLUMNS.items():
        for column in columns:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("PRAGMA user_version=3")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MerchantStore]:
    made = MerchantStore(tmp_path / "merchant.db")
    yield made
    made.close()


def _purchased(store: MerchantStore, lid: bytes = b"lid-1", xid: bytes = b"x" * 32) -> bytes:
    store.add_offer(lid, b"two books", EUR, "setpay")
    store.open_order(lid, xid, b"trans-ids", b"c" * 32)
    store.record_purchase(xid, b"t" * 32, b"oi-data", b"sealed-pi")
    return xid


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


def test_a_version_1_file_is_brought_up_to_date(tmp_path: Path) -> None:
    """A file from before operations kept a SET Error's code gets the column; its rows
    keep everything they had."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = _purchased(first)
    first.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_3(conn)
        conn.execute("DROP TABLE batch_requests")
        conn.execute("ALTER TABLE operations DROP COLUMN error_code")
        conn.execute("PRAGMA user_version=1")
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 4
        (operation,) = migrated.operations(xid)
        assert (operation.request, operation.state, operation.error_code) == (
            b"req", OperationState.SENT, 0,
        )  # fmt: skip
        assert migrated.fail_operation(operation.rrpid, 8).error_code == 8
    finally:
        migrated.close()


def _batch_request(rrpid: bytes, operation: int = CLOSE, batch_id: str = "b1") -> BatchRequest:
    return BatchRequest(
        rrpid=rrpid, operation=operation, batch_id=batch_id, return_summary=True,
        starting_point=0, maximum_items=5, state=OperationState.SENT, request=b"req",
        request_digest=b"dig", status=0, answer=b"", created_ms=0,
    )  # fmt: skip


def test_a_version_2_file_gets_the_batch_requests_table(tmp_path: Path) -> None:
    """A file from before batch changes were stored gets their table; the rest stays."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = _purchased(first)
    first.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_3(conn)
        conn.execute("DROP TABLE batch_requests")
        conn.execute("PRAGMA user_version=2")
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 4
        assert [op.request for op in migrated.operations(xid)] == [b"req"]
        assert migrated.batch_requests() == []
        assert migrated.add_batch_request(_batch_request(b"q" * 32)).state is OperationState.SENT
    finally:
        migrated.close()


def test_a_version_3_file_gets_the_columns_of_answers_that_did_not_verify(
    tmp_path: Path,
) -> None:
    """Its rows keep everything they had, with no answer that did not verify yet."""
    path = tmp_path / "merchant.db"
    first = MerchantStore(path)
    xid = _purchased(first)
    first.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
    first.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    first.add_batch_request(_batch_request(b"q" * 32))
    first.close()
    with sqlite3.connect(path) as conn:
        _back_to_version_3(conn)
    conn.close()
    migrated = MerchantStore(path)
    try:
        assert migrated.settings()["schema_version"] == SCHEMA_VERSION == 4
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


def test_batch_request_life(store: MerchantStore) -> None:
    """Stored as sent; answered (its batch recorded when the answer is a success), failed
    with a SET Error's code, or failed and built afresh in one write."""
    sent = store.add_batch_request(_batch_request(b"a" * 32))
    assert (sent.state, sent.request, sent.maximum_items, sent.return_summary) == (
        OperationState.SENT, b"req", 5, True,
    )  # fmt: skip
    assert sent.created_ms > 0
    assert store.batch_requests(OperationState.SENT) == [sent]
    done = store.settle_batch_request(sent.rrpid, True, 1, b"answer", "b1", True)
    assert (done.state, done.status, done.answer) == (OperationState.SUCCEEDED, 1, b"answer")
    assert store.batches() == [("b1", 1, True)]
    with pytest.raises(OrderStateError, match="not awaiting an answer"):
        store.settle_batch_request(sent.rrpid, True, 1, b"another answer", "b1", True)

    refused = store.add_batch_request(_batch_request(b"b" * 32, batch_id="b2"))
    store.settle_batch_request(refused.rrpid, False, 4, b"no", "b2", False)
    assert store.batch_request(refused.rrpid).state is OperationState.REFUSED
    assert [b for b, _, _ in store.batches()] == ["b1"]  # a refusal says nothing of b2

    stale = store.add_batch_request(_batch_request(b"c" * 32, PURGE))
    store.renew_batch_request(stale, 12, _batch_request(b"d" * 32, PURGE))
    old, fresh = store.batch_request(stale.rrpid), store.batch_request(b"d" * 32)
    assert (old.state, old.error_code) == (OperationState.FAILED, 12)
    assert (fresh.state, fresh.operation) == (OperationState.SENT, PURGE)
    with pytest.raises(OrderStateError, match="already built afresh"):
        store.renew_batch_request(stale, 12, _batch_request(b"e" * 32, PURGE))
    assert store.fail_batch_request(fresh.rrpid, 3).error_code == 3
    assert store.batch_requests(OperationState.SENT) == []


def test_a_batch_request_answered_twice_the_same_way_is_saved_once(
    store: MerchantStore,
) -> None:
    """A command given again and a serving merchant's round both send a waiting close and
    both get the gateway's one answer: the second to save it finds it saved."""
    sent = store.add_batch_request(_batch_request(b"a" * 32))
    first = store.settle_batch_request(sent.rrpid, True, 1, b"answer", "b1", True)
    store.record_batch("b1", 2, False, b"a later answer, saying something else")
    second = store.settle_batch_request(sent.rrpid, True, 1, b"answer", "b1", True)
    assert second == first
    assert store.batches() == [("b1", 2, False)]  # the later answer stands
    refused = store.add_batch_request(_batch_request(b"b" * 32, PURGE))
    assert store.fail_batch_request(refused.rrpid, 3) == store.fail_batch_request(refused.rrpid, 3)
    with pytest.raises(OrderStateError, match="not awaiting an answer"):
        store.fail_batch_request(refused.rrpid, 4)


def test_a_batch_change_is_stored_only_while_none_of_that_batch_waits(
    store: MerchantStore,
) -> None:
    """Looked for and stored in one write: a second close (or a purge) of a batch whose
    close waits is not stored, and the waiting close is given back instead; another
    batch's change is stored."""
    waiting = store.add_batch_request(_batch_request(b"a" * 32))
    assert store.add_batch_request(_batch_request(b"b" * 32)) == waiting
    assert store.add_batch_request(_batch_request(b"c" * 32, PURGE)) == waiting
    other = store.add_batch_request(_batch_request(b"d" * 32, batch_id="b2"))
    assert other.rrpid == b"d" * 32
    assert [r.rrpid for r in store.batch_requests()] == [b"a" * 32, b"d" * 32]
    store.settle_batch_request(waiting.rrpid, True, 1, b"answer", "b1", True)
    assert store.add_batch_request(_batch_request(b"e" * 32, PURGE)).rrpid == b"e" * 32


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "merchant.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        MerchantStore(path)


def test_order_life(store: MerchantStore) -> None:
    store.add_offer(b"lid-1", b"two books", EUR, "setpay")
    order = store.open_order(b"lid-1", b"x" * 32, b"trans-ids", b"c" * 32)
    assert order.state is OrderState.INITIATED
    assert order.description == b"two books" and order.amount == EUR
    order = store.record_purchase(order.xid, b"t" * 32, b"oi", b"pi-bytes")
    assert order.state is OrderState.PURCHASED and order.pi == b"pi-bytes"
    order = store.record_auth_request(order.xid, b"r" * 32, b"request", b"digest")
    assert order.state is OrderState.AUTHORIZING and order.auth_request == b"request"
    result = Authorization(1, EUR, "ABC123", b"auth-res", b"cap-token")
    order = store.record_authorization(order.xid, result, approved=True)
    assert order.state is OrderState.AUTHORIZED
    assert order.authorization == result
    partial = store.add_operation(
        order.xid, OperationKind.AUTH_REVERSAL, b"p" * 32, EUR.with_minor(500), b"req", b"dig"
    )
    settled = store.settle_auth_reversal(partial.rrpid, True, 1, 500, b"new-token")
    assert settled.state is OperationState.SUCCEEDED and settled.result_amount == 500
    order = store.order(order.xid)
    assert order.state is OrderState.AUTHORIZED
    assert order.authorization is not None
    assert order.authorization.amount.minor == 500
    assert order.authorization.cap_token == b"new-token"
    full = store.add_operation(
        order.xid, OperationKind.AUTH_REVERSAL, b"f" * 32, EUR.with_minor(0), b"req", b"dig"
    )
    store.settle_auth_reversal(full.rrpid, True, 1, 0, b"")
    assert store.order(order.xid).state is OrderState.REVERSED


def test_auth_reversal_saved_whole_or_not_at_all(store: MerchantStore) -> None:
    """The reversal's answer changes the order and ends the operation in one transaction:
    a refusal to move the order leaves the operation waiting too."""
    xid = _purchased(store)
    store.record_auth_request(xid, b"r" * 32, b"request", b"digest")
    store.record_authorization(xid, Authorization(1, EUR, "A", b"res", b"tok"), approved=False)
    op = store.add_operation(xid, OperationKind.AUTH_REVERSAL, b"v" * 32, EUR, b"req", b"dig")
    with pytest.raises(OrderStateError, match="declined"):
        store.settle_auth_reversal(op.rrpid, True, 1, 0, b"")
    assert store.operation(op.rrpid).state is OperationState.SENT
    # A refused reversal ends the operation and leaves the order as it was.
    assert store.settle_auth_reversal(op.rrpid, False, 2, 1250, b"").state is (
        OperationState.REFUSED
    )
    assert store.order(xid).state is OrderState.DECLINED


def test_auth_reversal_already_applied_to_the_order_is_settled(
    store: MerchantStore, tmp_path: Path
) -> None:
    """An earlier setpay saved the reversed order, then died before ending the operation:
    the answer, sent again, only ends the operation."""
    xid = _purchased(store)
    store.record_auth_request(xid, b"r" * 32, b"request", b"digest")
    store.record_authorization(xid, Authorization(1, EUR, "A", b"res", b"tok"), approved=True)
    op = store.add_operation(xid, OperationKind.AUTH_REVERSAL, b"v" * 32, EUR, b"req", b"dig")
    with sqlite3.connect(tmp_path / "merchant.db") as conn:
        conn.execute(
            "UPDATE orders SET state = 'reversed', auth_amount = 0, cap_token = x'' WHERE xid = ?",
            (xid,),
        )
    settled = store.settle_auth_reversal(op.rrpid, True, 1, 0, b"")
    assert settled.state is OperationState.SUCCEEDED
    assert store.order(xid).state is OrderState.REVERSED


def test_a_reversal_saved_again_late_does_not_undo_a_newer_one(store: MerchantStore) -> None:
    """A command and a starting merchant both sent reversal R1 and got its one answer; the
    operator reversed again (R2) before the slow one saved R1: R2 stands."""
    xid = _purchased(store)
    store.record_auth_request(xid, b"r" * 32, b"request", b"digest")
    store.record_authorization(xid, Authorization(1, EUR, "A", b"res", b"tok"), approved=True)
    first = store.add_operation(
        xid, OperationKind.AUTH_REVERSAL, b"1" * 32, EUR.with_minor(800), b"req", b"dig"
    )
    store.settle_auth_reversal(first.rrpid, True, 1, 800, b"token-1")
    second = store.add_operation(
        xid, OperationKind.AUTH_REVERSAL, b"2" * 32, EUR.with_minor(300), b"req", b"dig"
    )
    store.settle_auth_reversal(second.rrpid, True, 1, 300, b"token-2")
    again = store.settle_auth_reversal(first.rrpid, True, 1, 800, b"token-1")
    assert again.state is OperationState.SUCCEEDED
    order = store.order(xid)
    assert order.authorization is not None
    assert (order.authorization.amount.minor, order.authorization.cap_token) == (300, b"token-2")


def test_auth_request_renewed_once(store: MerchantStore) -> None:
    xid = _purchased(store)
    store.record_auth_request(xid, b"r" * 32, b"request", b"digest")
    order = store.renew_auth_request(xid, b"r" * 32, b"n" * 32, b"request-2", b"digest-2")
    assert order.state is OrderState.AUTHORIZING
    assert (order.auth_rrpid, order.auth_request, order.auth_request_digest) == (
        b"n" * 32, b"request-2", b"digest-2",
    )  # fmt: skip
    with pytest.raises(OrderStateError, match="already replaced"):
        store.renew_auth_request(xid, b"r" * 32, b"m" * 32, b"request-3", b"digest-3")
    store.record_failure(xid, 16)
    # Only a pending authorization is renewed.
    with pytest.raises(OrderStateError, match="is failed, not authorizing-able"):
        store.renew_auth_request(xid, b"n" * 32, b"m" * 32, b"request-3", b"digest-3")


def test_transitions_out_of_order_refused(store: MerchantStore) -> None:
    store.add_offer(b"lid-1", b"two books", EUR, "setpay")
    xid = store.open_order(b"lid-1", b"x" * 32, b"trans-ids", b"c" * 32).xid
    with pytest.raises(OrderStateError):
        store.record_auth_request(xid, b"r" * 32, b"request", b"digest")
    store.record_purchase(xid, b"t" * 32, b"oi", b"pi")
    with pytest.raises(OrderStateError):
        store.record_purchase(xid, b"t" * 32, b"oi", b"pi")
    with pytest.raises(OrderStateError):
        store.record_failure(xid, 8)


def test_unknown_keys(store: MerchantStore) -> None:
    with pytest.raises(UnknownOrder):
        store.order(b"n" * 32)
    with pytest.raises(UnknownOrder):
        store.offer(b"nope")
    with pytest.raises(UnknownOrder):
        store.open_order(b"nope", b"x" * 32, b"t", b"c" * 32)
    with pytest.raises(UnknownOrder):
        store.operation(b"n" * 32)


def test_offer_ids_are_unique(store: MerchantStore) -> None:
    store.add_offer(b"lid-1", b"a", EUR, "setpay")
    with pytest.raises(OrderStateError):
        store.add_offer(b"lid-1", b"b", EUR, "setpay")


@pytest.mark.parametrize(
    ("lid", "amount", "refusal"),
    [
        (b"lid-1", Money(0, 1250), r"in currency 0 \(exponent 2\): currency must be an ISO"),
        (b"lid-1", Money(978, 0), r"amount 0 in currency 978 \(exponent 2\): amount must be"),
        (b"lid-1", Money(978, 1250, 7), r"\(exponent 7\): amount exponent must be 2 for"),
        # The yen has no minor unit: 1250 at exponent 2 would be 12.50 yen.
        (b"lid-1", Money(392, 1250), r"exponent must be 0 for currency 392"),
        (b"", EUR, "LID-M"),
    ],
)
def test_an_offer_no_purchase_could_complete_is_not_recorded(
    store: MerchantStore, lid: bytes, amount: Money, refusal: str
) -> None:
    # The store checks, not the CLI only: the demo and any other caller record offers too.
    with pytest.raises(ConfigError, match=refusal):
        store.add_offer(lid, b"a lamp", amount, "setpay")
    with pytest.raises(UnknownOrder):
        store.offer(lid)


def test_repeated_pinit_replaces_the_unpaid_order(store: MerchantStore) -> None:
    store.add_offer(b"lid-1", b"a", EUR, "setpay")
    store.open_order(b"lid-1", b"1" * 32, b"t", b"c" * 32)
    store.open_order(b"lid-1", b"2" * 32, b"t", b"d" * 32)
    with pytest.raises(UnknownOrder):
        store.order(b"1" * 32)
    assert store.offer(b"lid-1").xid == b"2" * 32
    store.record_purchase(b"2" * 32, b"t" * 32, b"oi", b"pi")
    with pytest.raises(OrderStateError, match="already purchased"):
        store.open_order(b"lid-1", b"3" * 32, b"t", b"e" * 32)


def test_operations(store: MerchantStore) -> None:
    xid = _purchased(store)
    op = store.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    assert op.state is OperationState.SENT and op.request == b"req"
    done = store.settle_operation(op.rrpid, True, 1, 1250, "batch-1")
    assert done.state is OperationState.SUCCEEDED and done.batch_id == "batch-1"
    # Answered to two senders (a command, a merchant starting): saved once, no error.
    assert store.settle_operation(op.rrpid, True, 1, 1250, "batch-1") == done
    with pytest.raises(OrderStateError):  # but never another answer
        store.settle_operation(op.rrpid, True, 1, 1250)
    assert [o.rrpid for o in store.operations(xid)] == [op.rrpid]
    with pytest.raises(StoreError):  # an RRPID is used once
        store.add_operation(xid, OperationKind.CREDIT, b"r" * 32, EUR, b"req", b"dig")


def test_failed_and_renewed_operations(store: MerchantStore) -> None:
    xid = _purchased(store)
    op = store.add_operation(
        xid, OperationKind.CAPTURE_REVERSAL, b"r" * 32, EUR, b"req", b"dig", b"o" * 32
    )
    # Listed by time, then RRPID: the fresh one sorts after even within one millisecond.
    fresh = store.renew_operation(op, 16, b"s" * 32, b"req-2", b"dig-2")
    old = store.operation(op.rrpid)
    assert (old.state, old.error_code) == (OperationState.FAILED, 16)
    assert (fresh.state, fresh.kind, fresh.amount, fresh.original_rrpid, fresh.request) == (
        OperationState.SENT, OperationKind.CAPTURE_REVERSAL, EUR, b"o" * 32, b"req-2",
    )  # fmt: skip
    with pytest.raises(OrderStateError):  # an operation ends once
        store.renew_operation(op, 16, b"t" * 32, b"req-3", b"dig-3")
    assert [o.rrpid for o in store.operations(xid)] == [op.rrpid, fresh.rrpid]
    failed = store.fail_operation(fresh.rrpid, 3)
    assert (failed.state, failed.error_code) == (OperationState.FAILED, 3)
    assert store.fail_operation(fresh.rrpid, 3) == failed
    with pytest.raises(OrderStateError):
        store.settle_operation(fresh.rrpid, True, 1, 1250)


def test_a_waiting_request_is_put_off_and_nothing_else_of_it_changes(
    store: MerchantStore,
) -> None:
    """An order authorizing, an operation or a batch change sent keep how many answers in
    a row did not verify and when they are due again; one that has ended is left as it
    is, and an order's renewal clock (``updated_ms``) does not move."""
    xid = _purchased(store)
    order = store.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
    operation = store.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    batch = store.add_batch_request(_batch_request(b"q" * 32))
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


def test_find_order_by_prefix(store: MerchantStore) -> None:
    xid = _purchased(store, xid=bytes.fromhex("ab" * 32))
    _purchased(store, lid=b"lid-2", xid=bytes.fromhex("ac" * 32))
    assert store.find_order("abab").xid == xid
    assert store.find_order("ababa").xid == xid
    with pytest.raises(UnknownOrder, match="ambiguous"):
        store.find_order("a")
    with pytest.raises(UnknownOrder):
        store.find_order("ff")
    with pytest.raises(UnknownOrder):
        store.find_order("zz")


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


def _damage(path: Path, statement: str) -> None:
    """Change the file behind the store's back, as a faulty disk or a hand edit would."""
    with sqlite3.connect(path) as conn:
        conn.execute(statement)
    conn.close()


@pytest.mark.parametrize("state", ["'paid-ish'", "7", "'a state far longer than any'"])
def test_an_order_in_a_state_no_setpay_writes_is_a_store_error(
    store: MerchantStore, tmp_path: Path, state: str
) -> None:
    xid = _purchased(store)
    _damage(tmp_path / "merchant.db", f"UPDATE orders SET state = {state}")
    for read in (lambda: store.order(xid), store.orders, lambda: store.find_order(xid.hex())):
        with pytest.raises(StoreError) as caught:
            read()
        message = str(caught.value)
        assert message.startswith(f"merchant database damaged: order {xid.hex()[:8]} has ")
        assert "an order state" in message
    # A value short enough to be no card number is shown; a longer one is not.
    assert ("'paid-ish'" in message) == (state == "'paid-ish'")
    assert "far longer" not in message


@pytest.mark.parametrize(
    ("column", "what"), [("kind", "an operation kind"), ("state", "an operation state")]
)
def test_an_operation_no_setpay_writes_is_a_store_error(
    store: MerchantStore, tmp_path: Path, column: str, what: str
) -> None:
    xid = _purchased(store)
    op = store.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    _damage(tmp_path / "merchant.db", f"UPDATE operations SET {column} = 'bogus'")
    for read in (lambda: store.operation(op.rrpid), lambda: store.operations(xid)):
        with pytest.raises(
            StoreError, match=f"operation {op.rrpid.hex()[:8]} has 'bogus', not {what}"
        ):
            read()
