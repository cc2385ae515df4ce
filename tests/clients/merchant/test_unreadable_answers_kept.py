"""A request answered with a result code this merchant cannot read is counted as such, and
never built afresh.

The gateway's verified answer proves it decided the request's bytes, whatever the code
says. Once its retention has dropped that answer it refuses the same bytes as too old
(MESSAGE_TOO_OLD), the refusal ``renewal`` otherwise reads as "never applied": built
afresh under a new RRPID, the gateway would decide the request a second time (a second
capture). Here the refusal is injected once the answer came, and ``renewal``'s clock is
forced, as the scenario needs a wait past the gateway's retention: the request stays as it
was, its error says why, and the next try is put off by the longest wait.

``setpay merchant orders``, an operation's line and the metrics call such a request what
it is (an upgrade due), apart from one whose answers did not verify.
"""

from __future__ import annotations

import logging

import pytest

import gateway.admin
import gateway.authorize
import gateway.settlement
from cli.merchant import operation_line, order_line
from clients.errors import OutcomeUnknown, UnknownResultCode
from clients.merchant import outcome, renewal
from clients.merchant.records import Authorization, OperationKind, OperationState, OrderState
from clients.merchant.store import MerchantStore
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import now_ms
from setpay.v1 import authorization_pb2, gateway_admin_pb2
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.metrics_support import check_page, samples_of, scrape_text, value
from tests.clients.merchant.store_support import EUR, batch_request, purchased
from tests.clients.merchant.test_unreadable_result_codes import LATER, answering, bought_unreadably
from tests.clients.test_purchase_flow import buy, offer

TOO_OLD = ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
UNREADABLE = "setpay_merchant_requests_unreadable"
UNVERIFIED = "setpay_merchant_requests_unverified"
# What the log and the command say of a request held back from being built afresh.
GONE = "refused as too old, but it answered these bytes before"
CANNOT_READ = "of a result code this release cannot read: upgrade the merchant;"


def _stale_once(monkeypatch: pytest.MonkeyPatch, client: object, call: str) -> list[int]:
    """From now on the first ``call`` of the gateway ``client`` is refused as too old, as
    after the gateway's retention, and ``renewal`` allows building afresh; the calls made,
    counted."""
    real = getattr(client, call)
    calls = [0]

    def stale(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 1:
            raise PeerError(TOO_OLD)
        return real(*args, **kwargs)

    monkeypatch.setattr(client, call, stale)
    monkeypatch.setattr(renewal, "may_renew", lambda stored_ms, sent_ms: True)
    return calls


def _held_back(caplog: pytest.LogCaptureFixture, named: str) -> list[str]:
    """The merchant's errors saying ``named`` is not built afresh, and what to do."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "setpay.merchant" and r.levelno == logging.ERROR
        and named in r.getMessage() and GONE in r.getMessage()
        and "no release reads it back: settle it by hand with the acquirer" in r.getMessage()
    ]  # fmt: skip


def _put_off_longest(retry_after_ms: int, before_ms: int) -> None:
    wait = outcome.UNVERIFIED_MAX_WAIT_MS
    assert before_ms + wait <= retry_after_ms <= now_ms() + wait


def test_a_capture_answered_unreadably_is_never_captured_again(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reviewer's double capture, reversed: the capture the gateway decided stays
    sent, no second one is built, and the gateway's batch holds it once."""
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    merchant = make_merchant("m-kept-capture")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    batch_id = merchant.settlement.capture(xid, 100).batch_id  # the gateway's open batch
    with monkeypatch.context() as m:
        answering(m, gateway.settlement, "build_capture_response", cap_code=LATER)
        with pytest.raises(OutcomeUnknown) as unknown:
            merchant.settlement.capture(xid, 400)
    assert isinstance(unknown.value.cause, UnknownResultCode)
    (first,) = merchant.store.operations(state=OperationState.SENT)
    assert (first.unreadable, first.unverified) == (1, 0)

    calls = _stale_once(monkeypatch, merchant.settlement._gateway, "capture")
    before_ms = now_ms()
    assert merchant.settlement.resume() == []
    assert calls == [1]  # nothing built afresh, nothing sent after the refusal
    ops = merchant.store.operations(xid)
    assert len(ops) == 2  # the capture of 100, and the one of 400 as it was
    (still,) = merchant.store.operations(state=OperationState.SENT)
    assert (still.rrpid, still.request, still.error_code) == (first.rrpid, first.request, 0)
    assert (still.unreadable, still.unverified) == (1, 0)
    _put_off_longest(still.retry_after_ms, before_ms)
    assert len(_held_back(caplog, f"capture {first.rrpid.hex()[:8]}")) == 1
    assert not any("sent afresh" in r.getMessage() for r in caplog.records)

    monkeypatch.undo()
    data = merchant.batches.administer(gateway_admin_pb2.BATCH_OPERATION_REQUEST, batch_id)
    status = data.batch_status
    assert (status.capture_count, status.captured_total.amount) == (2, 500)


def test_an_authorization_answered_unreadably_is_never_built_afresh(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The order the gateway answered (a hold it may have placed) stays authorizing with
    its AuthReq, never failed by a second AuthReq around the same PI."""
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    merchant = make_merchant("m-kept-auth")
    wallet = make_wallet(merchant)
    xid = bought_unreadably(merchant, wallet, monkeypatch)
    held = merchant.store.order(xid)
    assert (held.state, held.unreadable, held.unverified) == (OrderState.AUTHORIZING, 1, 0)

    calls = _stale_once(monkeypatch, merchant.authorizer._gateway, "authorize")
    before_ms = now_ms()
    done = merchant.authorizer.authorize(xid)
    assert calls == [1]
    assert (done.state, done.error_code, done.authorization) == (OrderState.AUTHORIZING, 0, None)
    assert (done.auth_rrpid, done.auth_request) == (held.auth_rrpid, held.auth_request)
    assert done.unreadable == 1
    _put_off_longest(done.retry_after_ms, before_ms)
    assert len(_held_back(caplog, f"order {held.short_id}")) == 1


def test_a_batch_close_answered_unreadably_is_never_sent_afresh(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant = make_merchant("m-kept-batch")
    record = buy(make_wallet(merchant), offer(merchant, 5000))
    batch = merchant.settlement.capture(bytes.fromhex(record.xid), 5000).batch_id
    with monkeypatch.context() as m:
        answering(m, gateway.admin, "build_batch_admin_response", status=LATER)
        with pytest.raises(OutcomeUnknown):
            merchant.batches.administer(gateway_admin_pb2.BATCH_OPERATION_CLOSE, batch)
    (closing,) = merchant.store.batch_requests()
    calls = _stale_once(monkeypatch, merchant.batches._gateway, "batch_admin")
    assert merchant.batches.resume() == []
    assert calls == [1]
    (still,) = merchant.store.batch_requests()
    assert (still.rrpid, still.state, still.unreadable) == (
        closing.rrpid, OperationState.SENT, 1,
    )  # fmt: skip


def test_a_request_never_answered_unreadably_is_still_built_afresh(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guard holds back only what the gateway answered: a capture whose answer was
    lost, refused as too old, is built afresh and taken, as ``renewal`` says."""
    merchant = make_merchant("m-kept-renews")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    gw = merchant.settlement._gateway

    def too_old(*args: object, **kwargs: object) -> object:
        raise PeerError(TOO_OLD)

    monkeypatch.setattr(gw, "capture", too_old)
    monkeypatch.setattr(renewal, "may_renew", lambda stored_ms, sent_ms: False)
    with pytest.raises(OutcomeUnknown):
        merchant.settlement.capture(xid, 400)  # refused, but only just: kept
    monkeypatch.undo()
    (first,) = merchant.store.operations(xid)
    assert first.unreadable == 0
    _stale_once(monkeypatch, gw, "capture")
    (fresh,) = merchant.settlement.resume()
    assert fresh.rrpid != first.rrpid and fresh.state is OperationState.SUCCEEDED


# --- what people and the metrics are told ------------------------------------------------


def test_orders_names_an_unreadable_answer_apart_from_one_that_did_not_verify(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant = make_merchant("m-kept-lines")
    wallet = make_wallet(merchant)
    held = bought_unreadably(merchant, wallet, monkeypatch)
    captured = bytes.fromhex(buy(wallet, offer(merchant, 1000)).xid)
    with monkeypatch.context() as m:
        answering(m, gateway.settlement, "build_capture_response", cap_code=LATER)
        with pytest.raises(OutcomeUnknown):
            merchant.settlement.capture(captured, 400)
    auth_line = order_line(merchant.store.order(held), merchant.store)
    cap_line = order_line(merchant.store.order(captured), merchant.store)
    assert f"[authorization: 1 answer {CANNOT_READ} next try 20" in auth_line
    (capture,) = merchant.store.operations(captured)
    assert f"[capture {capture.rrpid.hex()[:8]}: 1 answer {CANNOT_READ} next try 20" in cap_line
    assert f"sent (outcome unknown, will retry: 1 answer {CANNOT_READ} next try 20" in (
        operation_line(capture)
    )
    for line in (auth_line, cap_line, operation_line(capture)):
        assert "did not verify" not in line


def test_both_kinds_of_answer_are_said_and_neither_is_said_of_a_plain_wait(
    store: MerchantStore,
) -> None:
    xid = purchased(store)
    order = store.record_auth_request(xid, b"a" * 32, b"auth-req", b"dig")
    plain = order_line(store.order(xid), store)
    assert "[" not in plain and "answer" not in plain
    store.postpone(order, 0, 1_000, unreadable=True)
    store.postpone(order, 0, 1_000, unreadable=True)
    store.postpone(order, 3, 2_000_000_000_000)
    line = order_line(store.order(xid), store)
    assert line.endswith(
        f"  [authorization: 2 answers {CANNOT_READ} 3 answers did not verify, "
        "next try 2033-05-18 03:33:20 UTC]"
    )
    operation = store.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    assert operation_line(operation).endswith(": sent (outcome unknown, will retry), 0")


def test_the_gauges_count_unreadable_and_unverified_apart(page: int, store: MerchantStore) -> None:
    unread = store.record_auth_request(purchased(store, b"lid-1", b"a" * 32), b"r" * 32,
                                       b"auth-req", b"digest")  # fmt: skip
    store.postpone(unread, 0, 0, unreadable=True)
    doubtful = store.record_auth_request(purchased(store, b"lid-2", b"b" * 32), b"s" * 32,
                                         b"auth-req", b"digest")  # fmt: skip
    store.postpone(doubtful, 1, 0)
    operation = store.add_operation(unread.xid, OperationKind.CAPTURE, b"c" * 32, EUR,
                                    b"cap-req", b"digest")  # fmt: skip
    store.postpone(operation, 0, 0, unreadable=True)
    store.postpone(operation, 2, 0)  # a later answer that did not verify: counted apart
    batch = store.add_batch_request(batch_request(b"q" * 32))
    text = scrape_text(page)
    check_page(text)  # promtool too
    samples = samples_of(text)
    assert value(samples, UNREADABLE, kind="authorization") == 1
    assert value(samples, UNVERIFIED, kind="authorization") == 1
    assert value(samples, UNREADABLE, kind="capture") == 1
    assert value(samples, UNVERIFIED, kind="capture") == 1
    assert value(samples, UNREADABLE, kind="batch") == 0
    assert (UNREADABLE, frozenset({("kind", "batch")})) in samples  # every kind, at 0
    store.postpone(batch, 0, 0, unreadable=True)
    answer = Authorization(authorization_pb2.AUTH_CODE_APPROVED, EUR, "A1", b"res", b"tok")
    store.record_authorization(unread.xid, answer, approved=True)  # read by an upgrade
    again = samples_of(scrape_text(page))
    assert value(again, UNREADABLE, kind="batch") == 1
    assert value(again, UNREADABLE, kind="authorization") == 0


def test_the_batch_query_of_an_unreadable_status_exits_as_an_unknown_outcome(
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """4, as the other commands whose answer says neither yes nor no; a known refusal of
    a query still exits 1."""
    merchant = make_merchant("m-kept-query")
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    with monkeypatch.context() as m:
        answering(m, gateway.admin, "build_batch_admin_response", status=LATER)
        status, out, err = run_cli([*base, "batch", "query", "--batch", "nope"], capsys)
    assert (status, out) == (4, "")
    assert "BatchAdminStatus 99" in err and "upgrade the merchant" in err
    status, out, err = run_cli([*base, "batch", "query", "--batch", "nope"], capsys)
    assert (status, err) == (1, "")
    assert out.endswith(": BATCH_UNKNOWN\n")
