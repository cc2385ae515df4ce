"""A gateway of a later release answers with a result code this merchant cannot read.

The real bank decides each request and stores its answer per RRPID; the answer is built
with a result code no enum of this build defines and signed and sealed as usual, so it
verifies in full. A later release could mean by it an approval (a hold placed) or a
capture taken: the merchant records nothing of it, keeps the request pending with its
bytes, backs off its retries as for an answer that did not verify (the gateway answers
each retry the same), logs an error naming the code and asking for an upgrade, and tells
a waiting command "outcome unknown" and a waiting wallet "order received". A code this
build defines is read as before: a decline stays a decline.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

import pytest

import gateway.admin
import gateway.authorize
import gateway.settlement
from clients.errors import OutcomeUnknown, TransportError, UnknownResultCode
from clients.merchant import outcome
from clients.merchant.metrics_labels import APPROVED, DECLINED, OTHER, answered
from clients.merchant.records import BatchRequest, Operation, OperationState, Order, OrderState
from clients.merchant.runtime import Merchant
from clients.wallet.runtime import Wallet
from setcore.auth_reversal import AuthRevResult
from setcore.authorization import AuthResult
from setcore.cap_rev_or_cred import CapRevOrCredResult
from setcore.capture import CaptureResult
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import now_ms
from setcore.gateway_admin import BatchAdminResult
from setpay.v1 import authorization_pb2, capture_pb2, gateway_admin_pb2
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.metrics_support import samples_of, scrape_text, value
from tests.clients.merchant.test_later_result_codes import (
    _auth_reversal,
    _capture,
    _capture_reversal,
    _credit,
    _credit_reversal,
)
from tests.clients.test_purchase_flow import buy, offer

# A value no result-code enum of this build defines: a later release's code.
LATER = 99
# ``outcome.next_try``'s wait after a first answer that did not verify, in ms.
FIRST_WAIT_MS = outcome.UNVERIFIED_FIRST_WAIT_MS


def answering(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, builder: str, **fields: int
) -> None:
    """From now on the gateway builds ``module.builder``'s answers with ``fields`` of every
    decision replaced: signed, sealed and stored (per RRPID) like any other answer."""
    real: Callable[..., bytes] = getattr(module, builder)

    def replaced(credentials: Any, verified: Any, decided: Any, *rest: Any, **kw: Any) -> bytes:
        if isinstance(decided, list):
            decided = [dataclasses.replace(d, **fields) for d in decided]
        else:
            decided = dataclasses.replace(decided, **fields)
        return real(credentials, verified, decided, *rest, **kw)

    monkeypatch.setattr(module, builder, replaced)


def bought_unreadably(
    merchant: Merchant, wallet: Wallet, monkeypatch: pytest.MonkeyPatch, amount: int = 1234
) -> bytes:
    """The XID of an order ``wallet`` bought from ``merchant``, whose AuthRes carried an
    AuthCode of a later release: left authorizing with its AuthReq, the merchant's
    authorizer stopped so that the test alone sends it again."""
    merchant.authorizer.stop(timeout=10)
    with monkeypatch.context() as m:
        answering(m, gateway.authorize, "build_auth_response", auth_code=LATER)
        return bytes.fromhex(buy(wallet, offer(merchant, amount)).xid)


def merchant_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    """What the merchant logged at ``level`` or above."""
    return [
        r.getMessage() for r in caplog.records if r.name == "setpay.merchant" and r.levelno >= level
    ]


def upgrade_asked(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The merchant's error lines that name ``name`` and ask for an upgrade."""
    return [
        line
        for line in merchant_lines(caplog, logging.ERROR)
        if name in line and "outcome unknown" in line and "upgrade" in line
    ]


def assert_waits(request: Order | Operation | BatchRequest, answers: int, before_ms: int) -> None:
    """``request`` is put off as after ``answers`` answers that did not verify in a row,
    the last one given after ``before_ms``, but counted as what they are: verified
    answers of a code this release cannot read, none that did not verify."""
    wait = FIRST_WAIT_MS * 2 ** (answers - 1)
    assert (request.unreadable, request.unverified) == (answers, 0)
    assert before_ms + wait <= request.retry_after_ms <= now_ms() + wait


# --- authorization --------------------------------------------------------------------


def test_an_auth_code_of_a_later_release_leaves_the_order_authorizing(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An approval variant (the whole amount, a capture token: a hold placed) under a
    code this build does not define: the wallet hears "order received", never a decline,
    nothing is recorded, and the same AuthReq asked again gets the same answer."""
    merchant = make_merchant("m-unread-auth")
    wallet = make_wallet(merchant)
    # The worker's scan (every few seconds) would otherwise race the test for the order.
    merchant.authorizer.stop(timeout=10)
    answering(monkeypatch, gateway.authorize, "build_auth_response", auth_code=LATER)
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    sent_ms = now_ms()
    record = buy(wallet, offer(merchant, 1234))
    assert (record.completion, record.refusal) == ("COMPLETION_CODE_ORDER_RECEIVED", "")
    assert "DECLINED" not in record.auth_code
    xid = bytes.fromhex(record.xid)
    order = merchant.store.order(xid)
    assert (order.state, order.authorization, order.error_code) == (OrderState.AUTHORIZING, None, 0)
    assert order.auth_request
    assert_waits(order, 1, sent_ms)
    assert upgrade_asked(caplog, "AuthCode 99")
    assert not any("did not verify" in line for line in upgrade_asked(caplog, "AuthCode 99"))
    assert not any("declined" in line.lower() for line in merchant_lines(caplog))

    # The gateway answers from its store, the builder of this test gone or not: asked
    # again, the same bytes get the same answer, and the order waits twice as long.
    monkeypatch.undo()
    again_ms = now_ms()
    again = merchant.authorizer.authorize(xid)
    assert (again.state, again.authorization) == (OrderState.AUTHORIZING, None)
    assert (again.auth_rrpid, again.auth_request) == (order.auth_rrpid, order.auth_request)
    assert_waits(again, 2, again_ms)
    assert len(upgrade_asked(caplog, "AuthCode 99")) == 2


def test_a_known_decline_stays_a_decline_whatever_its_reason(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DECLINED is read as before, a RespReason of a later release beside it too: a
    RespReason only explains its AuthCode."""
    merchant = make_merchant("m-known-decline")
    wallet = make_wallet(merchant)
    merchant.authorizer.stop(timeout=10)
    answering(
        monkeypatch, gateway.authorize, "build_auth_response",
        auth_code=authorization_pb2.AUTH_CODE_DECLINED, resp_reason=LATER,
    )  # fmt: skip
    record = buy(wallet, offer(merchant, 1234))
    assert record.auth_code == "AUTH_CODE_DECLINED"
    order = merchant.store.order(bytes.fromhex(record.xid))
    assert order.state is OrderState.DECLINED
    assert order.authorization is not None
    assert order.authorization.auth_code == authorization_pb2.AUTH_CODE_DECLINED
    assert (order.unverified, order.retry_after_ms) == (0, 0)


# --- settlement operations ------------------------------------------------------------


# Each operation: the gateway's builder of its answer, the decision's code field, the
# code's enum name, a code of that enum this build defines that refuses it, and the
# operation, once what it undoes is done.
Prepare = Callable[[Merchant, bytes], Callable[[], Operation]]
OPERATIONS: dict[str, tuple[str, str, str, int, Prepare]] = {
    "capture": (
        "build_capture_response", "cap_code", "CapCode",
        authorization_pb2.CAP_CODE_BATCH_CLOSED, _capture,
    ),
    "credit": (
        "build_cap_rev_or_cred_response", "code", "CapRevOrCredCode",
        capture_pb2.CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS, _credit,
    ),
    "authorization reversal": (
        "build_auth_reversal_response", "auth_rev_code", "AuthRevCode",
        authorization_pb2.AUTH_REV_CODE_SYSTEM_ERROR, _auth_reversal,
    ),
    "capture reversal": (
        "build_cap_rev_or_cred_response", "code", "CapRevOrCredCode",
        capture_pb2.CAP_REV_OR_CRED_CODE_ORIGINAL_PROCESSED, _capture_reversal,
    ),
    "credit reversal": (
        "build_cap_rev_or_cred_response", "code", "CapRevOrCredCode",
        capture_pb2.CAP_REV_OR_CRED_CODE_BATCH_CLOSED, _credit_reversal,
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(OPERATIONS))
def test_a_result_code_of_a_later_release_leaves_the_operation_sent(
    kind: str,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    builder, field, enum, _, prepare = OPERATIONS[kind]
    merchant = make_merchant(f"m-unread-{kind.replace(' ', '-')}")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    operation = prepare(merchant, xid)
    authorized = merchant.store.order(xid)
    answering(monkeypatch, gateway.settlement, builder, **{field: LATER})
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    sent_ms = now_ms()
    with pytest.raises(OutcomeUnknown) as unknown:
        operation()
    assert isinstance(unknown.value.cause, UnknownResultCode)
    assert f"{enum} 99" in str(unknown.value) and "upgrade" in str(unknown.value)
    assert "did not verify" not in str(unknown.value)
    (waiting,) = merchant.store.operations(state=OperationState.SENT)
    assert (waiting.result_code, waiting.result_amount, waiting.batch_id) == (0, 0, "")
    assert waiting.error_code == 0
    assert_waits(waiting, 1, sent_ms)
    assert upgrade_asked(caplog, f"{enum} 99")
    assert not any("refused" in line for line in merchant_lines(caplog))
    # Nothing of the order moved: not its authorization (a reversal), nor its state.
    now = merchant.store.order(xid)
    assert (now.state, now.authorization) == (authorized.state, authorized.authorization)

    # Sent again, the same bytes get the gateway's stored answer: still waiting, longer.
    monkeypatch.undo()
    again_ms = now_ms()
    assert merchant.settlement.resume() == []
    (still,) = merchant.store.operations(state=OperationState.SENT)
    assert (still.rrpid, still.request) == (waiting.rrpid, waiting.request)
    assert_waits(still, 2, again_ms)


@pytest.mark.parametrize("kind", list(OPERATIONS))
def test_a_known_refusal_of_an_operation_is_final_as_before(
    kind: str,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builder, field, _, refusal, prepare = OPERATIONS[kind]
    merchant = make_merchant(f"m-refused-{kind.replace(' ', '-')}")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    operation = prepare(merchant, xid)
    answering(monkeypatch, gateway.settlement, builder, **{field: refusal})
    refused = operation()
    assert (refused.state, refused.result_code) == (OperationState.REFUSED, refusal)
    assert (refused.unverified, refused.retry_after_ms) == (0, 0)
    assert merchant.store.operations(state=OperationState.SENT) == []


def test_the_capture_command_exits_as_for_an_outcome_unknown(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    page: int,
) -> None:
    merchant = make_merchant("m-unread-cli")
    record = buy(make_wallet(merchant), offer(merchant, 10_000))
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    answering(monkeypatch, gateway.settlement, "build_capture_response", cap_code=LATER)
    status, out, err = run_cli([*base, "capture", record.xid[:12], "--amount", "3000"], capsys)
    assert (status, out) == (4, "")
    assert "outcome unknown, will retry" in err and "CapCode 99" in err and "upgrade" in err
    (capture,) = merchant.store.operations(bytes.fromhex(record.xid))
    assert (capture.state, capture.result_code) == (OperationState.SENT, 0)
    # Counted under ``other``, never by its number nor as a decline.
    samples = samples_of(scrape_text(page))
    calls = "setpay_merchant_gateway_calls_total"
    assert value(samples, calls, kind="capture", result=OTHER) == 1
    assert value(samples, calls, kind="capture", result=DECLINED) == 0
    assert not any(" " in dict(labels).get("result", "") for _, labels in samples)


# --- batches --------------------------------------------------------------------------


def test_a_batch_status_of_a_later_release_leaves_the_change_sent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-unread-batch")
    record = buy(make_wallet(merchant), offer(merchant, 5000))
    batch = merchant.settlement.capture(bytes.fromhex(record.xid), 5000).batch_id
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    answering(monkeypatch, gateway.admin, "build_batch_admin_response", status=LATER)
    sent_ms = now_ms()
    status, out, err = run_cli([*base, "batch", "close", "--batch", batch], capsys)
    assert (status, out) == (4, "")
    assert "BatchAdminStatus 99" in err and "upgrade" in err
    (closing,) = merchant.store.batch_requests()
    assert (closing.state, closing.status, closing.answer) == (OperationState.SENT, 0, b"")
    assert_waits(closing, 1, sent_ms)
    assert upgrade_asked(caplog, "BatchAdminStatus 99")
    assert [b for b in merchant.store.batches() if b[0] == batch and b[2]] == []

    # Given again: the same stored request goes, the gateway answers it the same.
    monkeypatch.undo()
    again_ms = now_ms()
    with pytest.raises(OutcomeUnknown, match="BatchAdminStatus 99"):
        merchant.batches.administer(gateway_admin_pb2.BATCH_OPERATION_CLOSE, batch)
    (still,) = merchant.store.batch_requests()
    assert (still.rrpid, still.request, still.state) == (
        closing.rrpid, closing.request, OperationState.SENT,
    )  # fmt: skip
    assert_waits(still, 2, again_ms)


def test_a_known_batch_refusal_is_final_as_before(
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    merchant = make_merchant("m-refused-batch")
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    refusal = gateway_admin_pb2.BATCH_ADMIN_STATUS_BATCH_NOT_CLOSED
    answering(monkeypatch, gateway.admin, "build_batch_admin_response", status=refusal)
    status, out, err = run_cli([*base, "batch", "open"], capsys)
    assert (status, err) == (1, "")
    assert out.endswith(": BATCH_NOT_CLOSED\n")
    (opening,) = merchant.store.batch_requests()
    assert (opening.state, opening.status) == (OperationState.REFUSED, refusal)
    assert (opening.unverified, opening.retry_after_ms) == (0, 0)


def test_a_batch_query_of_a_later_status_is_an_error_and_records_nothing(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    merchant = make_merchant("m-unread-query")
    record = buy(make_wallet(merchant), offer(merchant, 5000))
    batch = merchant.settlement.capture(bytes.fromhex(record.xid), 5000).batch_id
    known = merchant.store.batches()
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    answering(monkeypatch, gateway.admin, "build_batch_admin_response", status=LATER)
    status, out, err = run_cli([*base, "batch", "query", "--batch", batch], capsys)
    assert (status, out) == (4, "")
    assert "BatchAdminStatus 99" in err and "upgrade" in err
    with pytest.raises(UnknownResultCode):
        merchant.batches.administer(gateway_admin_pb2.BATCH_OPERATION_REQUEST, batch)
    assert merchant.store.batches() == known
    assert merchant.store.batch_requests() == []


# --- the checks alone -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("enum", "code", "known"),
    [
        (authorization_pb2.AuthCode, authorization_pb2.AUTH_CODE_DECLINED, True),
        (authorization_pb2.AuthCode, authorization_pb2.AUTH_CODE_UNSPECIFIED, True),
        (authorization_pb2.AuthCode, LATER, False),
        (authorization_pb2.CapCode, LATER, False),
        (authorization_pb2.AuthRevCode, LATER, False),
        (capture_pb2.CapRevOrCredCode, LATER, False),
        (gateway_admin_pb2.BatchAdminStatus, LATER, False),
        (gateway_admin_pb2.BatchAdminStatus, -1, False),
    ],
)
def test_require_known_refuses_only_codes_this_build_does_not_define(
    enum: Any, code: int, known: bool
) -> None:
    if known:
        outcome.require_known(enum, code)
        return
    with pytest.raises(UnknownResultCode) as refused:
        outcome.require_known(enum, code)
    assert str(refused.value).startswith(f"the gateway answered {enum.DESCRIPTOR.name} {code}, ")


def test_an_unreadable_code_backs_off_and_says_why_without_did_not_verify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its wait doubles with every answer of either kind; it ends a run of answers that
    did not verify (it verified) and is not one of them; one that did not verify after
    it still waits longer than the first would."""
    monkeypatch.setattr(outcome, "now_ms", lambda: 0)
    error = UnknownResultCode("CapCode 99")
    assert outcome.next_try(2, error) == (0, FIRST_WAIT_MS)
    assert outcome.next_try(2, error, 2) == (0, FIRST_WAIT_MS * 4)
    unverifiable = ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "not the gateway's")
    assert outcome.next_try(0, unverifiable, 2) == (1, FIRST_WAIT_MS * 4)
    no_answer = TransportError("gateway", "UNAVAILABLE")
    assert outcome.next_try(0, no_answer, 2) is None
    # No answer after one that did not verify ends that run, not the unreadable ones' wait.
    assert outcome.next_try(1, no_answer, 1) == (0, FIRST_WAIT_MS)
    assert outcome.next_try(1, no_answer, 0) == (0, 0)
    assert not outcome.did_not_verify(error)
    reason = outcome.why_unknown(error)
    assert "CapCode 99" in reason and "upgrade" in reason and "did not verify" not in reason


def _results(code: int, success: int) -> dict[str, object]:
    """A verified answer of each kind carrying ``code`` (``success``: the kind's yes)."""
    gateway_cert = cast(Any, None)  # not read by the metrics
    a, c, g = authorization_pb2, capture_pb2, gateway_admin_pb2
    auth = a.AuthResData()
    auth.auth_res_payload.auth_header.auth_code = code  # type: ignore[assignment]
    cap = c.CapResData()
    cap.cap_res_items.add().cap_res_payload.cap_code = success  # type: ignore[assignment]
    cap.cap_res_items.add().cap_res_payload.cap_code = code  # type: ignore[assignment]
    cred = c.CapRevOrCredResData()
    cred.items.add().code = code  # type: ignore[assignment]
    return {
        "AuthCode": AuthResult(auth, a.AuthResBaggage(), gateway_cert),
        "AuthRevCode": AuthRevResult(
            a.AuthRevResData(auth_rev_code=code),  # type: ignore[arg-type]
            a.AuthRevResBaggage(),
            gateway_cert,
        ),
        "CapCode": CaptureResult(cap, gateway_cert),
        "CapRevOrCredCode": CapRevOrCredResult(cred, gateway_cert),
        "BatchAdminStatus": BatchAdminResult(
            g.BatchAdminResData(status=code),  # type: ignore[arg-type]
            gateway_cert,
        ),
    }


def test_a_later_code_is_counted_as_other_a_known_refusal_as_declined() -> None:
    # 1 is every one of these enums' yes, 2 a no each defines.
    for result in _results(LATER, 1).values():
        assert answered(result) == OTHER
    for result in _results(2, 1).values():
        assert answered(result) == DECLINED
    for result in _results(1, 1).values():
        assert answered(result) == APPROVED
