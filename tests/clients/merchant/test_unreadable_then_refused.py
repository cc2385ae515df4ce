"""A request answered unreadably, then refused by the gateway with another verified SET Error.

The gateway's verified answer of a result code this merchant cannot read proves it
decided the request's bytes (``test_unreadable_answers_kept``). Should a later try of
the same bytes be refused with a verified SET Error other than MESSAGE_TOO_OLD (one of
the gateway's checks failing once its retention has dropped that answer), that refusal
undoes nothing the gateway decided: the request is not ended failed. It stays pending,
the store refusing to end it (``request_rows.AnsweredUnreadably``) inside the
transaction that would, and the merchant says so as an error asking for the release
that reads the code, never as a failure of its own ("could not open or save the
answer"), and puts its next try off by the longest wait. Nothing else of the file
changes. The refusal here is the real bank's, signed and naming the request: one of its
checks made to fail, its stored answer out of reach (``_refused_afresh``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from types import ModuleType

import pytest

import gateway.admin
import gateway.authorize
import gateway.settlement
from clients.errors import OutcomeUnknown
from clients.merchant.records import (
    BatchRequest,
    Operation,
    OperationKind,
    OperationState,
    Order,
    OrderState,
)
from clients.merchant.request_rows import AnsweredUnreadably
from clients.merchant.store import MerchantStore
from gateway.servicer import PaymentGatewayServicer
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import now_ms
from setpay.v1 import gateway_admin_pb2
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.store_support import EUR, batch_request, purchased
from tests.clients.merchant.test_later_result_codes import refusing
from tests.clients.merchant.test_unreadable_answers_kept import _put_off_longest
from tests.clients.merchant.test_unreadable_result_codes import LATER, answering, bought_unreadably
from tests.clients.test_purchase_flow import buy, offer

REFUSAL = ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED  # what ``refusing`` has the bank say
# What the merchant says of such a request, and what it says of a failure of its own.
KEPT = (
    "refused by the gateway with ERROR_CODE_MESSAGE_NOT_SUPPORTED, but it answered these "
    "bytes before, with a result code this merchant cannot read, so it decided them: left "
    "pending, neither built afresh nor ended failed; the gateway no longer holds that "
    "answer, so no release reads it back: settle it by hand with the acquirer"
)
OWN_FAILURE = "could not open or save the answer"

Rows = dict[str, list[tuple[tuple[str, object], ...]]]


def _rows(store: MerchantStore) -> Rows:
    """Every row of every table of the merchant's file, as it stands."""

    def read(conn: sqlite3.Connection) -> Rows:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        rows: Rows = {}
        for table in tables:
            cursor = conn.execute(f"SELECT * FROM {table}")  # the names are the file's own
            names = [column[0] for column in cursor.description]
            rows[table] = sorted((tuple(zip(names, row, strict=True)) for row in cursor), key=repr)
        return rows

    return store._read(read)


def _row(rows: Rows, table: str, key: str, value: bytes) -> dict[str, object]:
    """The one row of ``table`` whose ``key`` is ``value``."""
    (row,) = (dict(r) for r in rows[table] if dict(r)[key] == value)
    return row


def _only_put_off(before: Rows, after: Rows, table: str, key: str, value: bytes) -> int:
    """``after`` is ``before`` but for the ``retry_after_ms`` of the one row of ``table``
    whose ``key`` is ``value``; that row's new ``retry_after_ms``."""
    was, now = _row(before, table, key, value), _row(after, table, key, value)
    put_off = now["retry_after_ms"]
    assert isinstance(put_off, int) and put_off != was["retry_after_ms"]
    assert {**now, "retry_after_ms": was["retry_after_ms"]} == was

    def others(rows: Rows) -> Rows:
        return {
            name: [r for r in kept if name != table or dict(r)[key] != value]
            for name, kept in rows.items()
        }

    assert others(after) == others(before)
    return put_off


def _refused_afresh(monkeypatch: pytest.MonkeyPatch, module: ModuleType, check: str) -> None:
    """From now on the gateway's ``module.check`` fails, and the gateway holds no answer
    to give instead, as once its retention has dropped it: it refuses every request that
    comes to that check, those it decided before too, with a signed SET Error."""
    monkeypatch.setattr(module, check, refusing)
    monkeypatch.setattr(PaymentGatewayServicer, "_recorded_answer", lambda *args: None)


def _said(caplog: pytest.LogCaptureFixture, named: str) -> list[logging.LogRecord]:
    """The merchant's records that name ``named``."""
    return [r for r in caplog.records if r.name == "setpay.merchant" and named in r.getMessage()]


def _kept_not_failed(caplog: pytest.LogCaptureFixture, named: str) -> None:
    """Said once, as an error, that ``named`` stays pending and why; never as a failure of
    the merchant's own, nor as a request refused."""
    said = _said(caplog, named)
    kept = [r for r in said if KEPT in r.getMessage()]
    assert len(kept) == 1
    assert kept[0].levelno == logging.ERROR and kept[0].exc_info is None
    assert "outcome unknown, will retry" in kept[0].getMessage()
    assert not [r for r in said if OWN_FAILURE in r.getMessage()]
    assert not [r for r in said if "AnsweredUnreadably" in r.getMessage()]
    assert not [r for r in said if "refused by the gateway:" in r.getMessage()]


# --- through the real bank ---------------------------------------------------------------


def test_an_authreq_answered_unreadably_then_refused_stays_authorizing(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hold the gateway may have placed stands: the order is not failed, the same
    AuthReq is kept, and the error asks for a settlement by hand."""
    merchant = make_merchant("m-unread-refused-auth")
    xid = bought_unreadably(merchant, make_wallet(merchant), monkeypatch)
    held = merchant.store.order(xid)
    assert (held.state, held.unreadable) == (OrderState.AUTHORIZING, 1)
    before = _rows(merchant.store)

    _refused_afresh(monkeypatch, gateway.authorize, "check_agreement")
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    before_ms = now_ms()
    done = merchant.authorizer.authorize(xid)
    _kept_not_failed(caplog, f"order {held.short_id}")
    assert (done.state, done.error_code, done.authorization) == (OrderState.AUTHORIZING, 0, None)
    assert (done.auth_rrpid, done.unreadable) == (held.auth_rrpid, 1)
    put_off = _only_put_off(before, _rows(merchant.store), "orders", "xid", xid)
    _put_off_longest(put_off, before_ms)


def test_a_capture_answered_unreadably_then_refused_stays_sent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-unread-refused-cap")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    with monkeypatch.context() as m:
        answering(m, gateway.settlement, "build_capture_response", cap_code=LATER)
        with pytest.raises(OutcomeUnknown):
            merchant.settlement.capture(xid, 400)
    (first,) = merchant.store.operations(state=OperationState.SENT)
    assert first.unreadable == 1
    before = _rows(merchant.store)

    _refused_afresh(monkeypatch, gateway.settlement, "open_capture_request")
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    before_ms = now_ms()
    assert merchant.settlement.resume() == []
    _kept_not_failed(caplog, f"capture {first.rrpid.hex()[:8]}")
    (still,) = merchant.store.operations(state=OperationState.SENT)
    assert (still.rrpid, still.error_code, still.unreadable) == (first.rrpid, 0, 1)
    put_off = _only_put_off(before, _rows(merchant.store), "operations", "rrpid", first.rrpid)
    _put_off_longest(put_off, before_ms)


def test_a_batch_close_answered_unreadably_then_refused_stays_sent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The command given again hears why, as its ``OutcomeUnknown``."""
    merchant = make_merchant("m-unread-refused-batch")
    record = buy(make_wallet(merchant), offer(merchant, 5000))
    batch = merchant.settlement.capture(bytes.fromhex(record.xid), 5000).batch_id
    close = gateway_admin_pb2.BATCH_OPERATION_CLOSE
    with monkeypatch.context() as m:
        answering(m, gateway.admin, "build_batch_admin_response", status=LATER)
        with pytest.raises(OutcomeUnknown):
            merchant.batches.administer(close, batch)
    (closing,) = merchant.store.batch_requests()
    assert closing.unreadable == 1
    before = _rows(merchant.store)

    _refused_afresh(monkeypatch, gateway.admin, "open_batch_admin_request")
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    before_ms = now_ms()
    with pytest.raises(OutcomeUnknown) as unknown:
        merchant.batches.administer(close, batch)
    assert KEPT in str(unknown.value)
    assert isinstance(unknown.value.cause, PeerError) and unknown.value.cause.code == REFUSAL
    (still,) = merchant.store.batch_requests()
    assert (still.rrpid, still.state, still.error_code) == (closing.rrpid, OperationState.SENT, 0)
    put_off = _only_put_off(before, _rows(merchant.store), "batch_requests", "rrpid", closing.rrpid)
    _put_off_longest(put_off, before_ms)
    _kept_not_failed(caplog, closing.rrpid.hex()[:8])


def test_a_capture_never_answered_unreadably_is_still_ended_by_the_refusal(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The guard holds back only what the gateway answered: the same verified refusal of
    a capture with no such answer ends it failed, as before."""
    merchant = make_merchant("m-refused-plain-cap")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    monkeypatch.setattr(gateway.settlement, "open_capture_request", refusing)
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    failed = merchant.settlement.capture(xid, 400)
    assert (failed.state, failed.error_code) == (OperationState.FAILED, REFUSAL)
    said = _said(caplog, f"capture {failed.rrpid.hex()[:8]}")
    assert [r.levelno for r in said if "refused by the gateway:" in r.getMessage()] == [
        logging.WARNING
    ]
    assert not [r for r in said if KEPT in r.getMessage()]


# --- the store alone -----------------------------------------------------------------------

# Each way the store ends a request failed or builds it afresh: what it is given, on a
# store holding one order authorizing, one capture sent and one batch close sent; its
# table, key column and key; and a column it sets and to what, once done.
Call = Callable[[MerchantStore], object]
XID, AUTH, CAPTURE, CLOSING, FRESH = b"x" * 32, b"a" * 32, b"c" * 32, b"q" * 32, b"n" * 32
TOO_OLD = ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
FAILED = ("state", OperationState.FAILED.value)
ENDINGS: dict[str, tuple[Call, str, str, bytes, tuple[str, object]]] = {
    "an order failed": (
        lambda s: s.record_failure(XID, REFUSAL), "orders", "xid", XID,
        ("state", OrderState.FAILED.value),
    ),
    "an AuthReq built afresh": (
        lambda s: s.renew_auth_request(XID, AUTH, FRESH, b"auth-req-2", b"dig2"),
        "orders", "xid", XID, ("auth_rrpid", FRESH),
    ),
    "an operation failed": (
        lambda s: s.fail_operation(CAPTURE, REFUSAL), "operations", "rrpid", CAPTURE, FAILED,
    ),
    "an operation built afresh": (
        lambda s: s.renew_operation(s.operation(CAPTURE), TOO_OLD, FRESH, b"cap-2", b"dig2"),
        "operations", "rrpid", CAPTURE, FAILED,
    ),
    "a batch request failed": (
        lambda s: s.fail_batch_request(CLOSING, REFUSAL),
        "batch_requests", "rrpid", CLOSING, FAILED,
    ),
    "a batch request built afresh": (
        lambda s: s.renew_batch_request(
            s.batch_request(CLOSING), TOO_OLD, batch_request(FRESH)
        ),
        "batch_requests", "rrpid", CLOSING, FAILED,
    ),
}  # fmt: skip


def _three_waiting(store: MerchantStore) -> None:
    order = store.record_auth_request(purchased(store, xid=XID), AUTH, b"auth-req", b"dig")
    store.add_operation(order.xid, OperationKind.CAPTURE, CAPTURE, EUR, b"cap-req", b"dig")
    store.add_batch_request(batch_request(CLOSING))


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_the_store_ends_nothing_answered_unreadably(ending: str, store: MerchantStore) -> None:
    call, table, *_ = ENDINGS[ending]
    _three_waiting(store)
    waiting: dict[str, Order | Operation | BatchRequest] = {
        "orders": store.order(XID),
        "operations": store.operation(CAPTURE),
        "batch_requests": store.batch_request(CLOSING),
    }
    store.postpone(waiting[table], 0, 1_000, unreadable=True)
    assert store.unreadable_answers(waiting[table]) == 1
    before = _rows(store)
    with pytest.raises(AnsweredUnreadably, match="left pending, neither built afresh nor"):
        call(store)
    assert _rows(store) == before


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_the_store_ends_what_was_never_answered_unreadably(
    ending: str, store: MerchantStore
) -> None:
    call, table, column, key, (changed, to) = ENDINGS[ending]
    _three_waiting(store)
    assert _row(_rows(store), table, column, key)[changed] != to
    call(store)
    assert _row(_rows(store), table, column, key)[changed] == to


def test_a_verified_refusal_ends_the_run_of_answers_that_did_not_verify(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kept pending on a verified refusal, the request's run of answers that did not
    verify ends, as any verified answer ends it: ``setpay merchant orders`` no longer
    says its answers did not verify. Before, the count read before the send was written
    back."""
    merchant = make_merchant("m-unread-refused-run")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    with monkeypatch.context() as m:
        answering(m, gateway.settlement, "build_capture_response", cap_code=LATER)
        with pytest.raises(OutcomeUnknown):
            merchant.settlement.capture(xid, 400)
    (sent,) = merchant.store.operations(state=OperationState.SENT)
    merchant.store.postpone(sent, 2, 0)  # two answers since that did not verify
    _refused_afresh(monkeypatch, gateway.settlement, "open_capture_request")
    merchant.settlement.resume()
    (still,) = merchant.store.operations(state=OperationState.SENT)
    assert (still.rrpid, still.unverified, still.unreadable) == (sent.rrpid, 0, 1)
