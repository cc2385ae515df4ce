"""The merchant's settlement operations and batch changes (``settlement_store``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clients.errors import OrderStateError, StoreError
from clients.merchant.records import (
    Authorization,
    Operation,
    OperationKind,
    OperationState,
    Order,
    OrderState,
)
from clients.merchant.store import MerchantStore
from tests.clients.merchant.store_support import EUR, PURGE, batch_request, damage, purchased


def test_operations(store: MerchantStore) -> None:
    xid = purchased(store)
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
    xid = purchased(store)
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


def test_auth_reversal_saved_whole_or_not_at_all(store: MerchantStore) -> None:
    """The reversal's answer changes the order and ends the operation in one transaction:
    a refusal to move the order leaves the operation waiting too."""
    xid = purchased(store)
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
    xid = purchased(store)
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
    xid = purchased(store)
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


def test_batch_request_life(store: MerchantStore) -> None:
    """Stored as sent; answered (its batch recorded when the answer is a success), failed
    with a SET Error's code, or failed and built afresh in one write."""
    sent = store.add_batch_request(batch_request(b"a" * 32))
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

    refused = store.add_batch_request(batch_request(b"b" * 32, batch_id="b2"))
    store.settle_batch_request(refused.rrpid, False, 4, b"no", "b2", False)
    assert store.batch_request(refused.rrpid).state is OperationState.REFUSED
    assert [b for b, _, _ in store.batches()] == ["b1"]  # a refusal says nothing of b2

    stale = store.add_batch_request(batch_request(b"c" * 32, PURGE))
    store.renew_batch_request(stale, 12, batch_request(b"d" * 32, PURGE))
    old, fresh = store.batch_request(stale.rrpid), store.batch_request(b"d" * 32)
    assert (old.state, old.error_code) == (OperationState.FAILED, 12)
    assert (fresh.state, fresh.operation) == (OperationState.SENT, PURGE)
    with pytest.raises(OrderStateError, match="already built afresh"):
        store.renew_batch_request(stale, 12, batch_request(b"e" * 32, PURGE))
    assert store.fail_batch_request(fresh.rrpid, 3).error_code == 3
    assert store.batch_requests(OperationState.SENT) == []


def test_a_batch_request_answered_twice_the_same_way_is_saved_once(
    store: MerchantStore,
) -> None:
    """A command given again and a serving merchant's round both send a waiting close and
    both get the gateway's one answer: the second to save it finds it saved."""
    sent = store.add_batch_request(batch_request(b"a" * 32))
    first = store.settle_batch_request(sent.rrpid, True, 1, b"answer", "b1", True)
    store.record_batch("b1", 2, False, b"a later answer, saying something else")
    second = store.settle_batch_request(sent.rrpid, True, 1, b"answer", "b1", True)
    assert second == first
    assert store.batches() == [("b1", 2, False)]  # the later answer stands
    refused = store.add_batch_request(batch_request(b"b" * 32, PURGE))
    assert store.fail_batch_request(refused.rrpid, 3) == store.fail_batch_request(refused.rrpid, 3)
    with pytest.raises(OrderStateError, match="not awaiting an answer"):
        store.fail_batch_request(refused.rrpid, 4)


def test_a_batch_change_is_stored_only_while_none_of_that_batch_waits(
    store: MerchantStore,
) -> None:
    """Looked for and stored in one write: a second close (or a purge) of a batch whose
    close waits is not stored, and the waiting close is given back instead; another
    batch's change is stored."""
    waiting = store.add_batch_request(batch_request(b"a" * 32))
    assert store.add_batch_request(batch_request(b"b" * 32)) == waiting
    assert store.add_batch_request(batch_request(b"c" * 32, PURGE)) == waiting
    other = store.add_batch_request(batch_request(b"d" * 32, batch_id="b2"))
    assert other.rrpid == b"d" * 32
    assert [r.rrpid for r in store.batch_requests()] == [b"a" * 32, b"d" * 32]
    store.settle_batch_request(waiting.rrpid, True, 1, b"answer", "b1", True)
    assert store.add_batch_request(batch_request(b"e" * 32, PURGE)).rrpid == b"e" * 32


@pytest.mark.parametrize(
    ("column", "what"), [("kind", "an operation kind"), ("state", "an operation state")]
)
def test_an_operation_no_setpay_writes_is_a_store_error(
    store: MerchantStore, tmp_path: Path, column: str, what: str
) -> None:
    xid = purchased(store)
    op = store.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    damage(tmp_path / "merchant.db", f"UPDATE operations SET {column} = 'bogus'")
    for read in (lambda: store.operation(op.rrpid), lambda: store.operations(xid)):
        with pytest.raises(
            StoreError, match=f"operation {op.rrpid.hex()[:8]} has 'bogus', not {what}"
        ):
            read()


def test_an_operation_is_stored_only_if_admitted_in_its_own_transaction(
    store: MerchantStore,
) -> None:
    """``admit`` sees the order and its operations as the storing transaction does (the
    one stored just before included); what it raises is raised as it is, and nothing is
    stored."""
    xid = purchased(store)
    store.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
    store.record_authorization(xid, Authorization(1, EUR, "A", b"res", b"tok"), approved=True)
    seen: list[tuple[OrderState, list[bytes]]] = []

    def admit(order: Order, operations: list[Operation]) -> None:
        seen.append((order.state, [op.rrpid for op in operations]))
        if operations:
            raise OrderStateError("one is enough")

    first = store.add_operation(
        xid, OperationKind.CAPTURE, b"1" * 32, EUR, b"req", b"dig", admit=admit
    )
    with pytest.raises(OrderStateError, match="one is enough"):
        store.add_operation(xid, OperationKind.CAPTURE, b"2" * 32, EUR, b"req", b"dig", admit=admit)
    assert seen == [(OrderState.AUTHORIZED, []), (OrderState.AUTHORIZED, [first.rrpid])]
    assert [op.rrpid for op in store.operations(xid)] == [first.rrpid]
