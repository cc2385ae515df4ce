"""A gateway of a later release answers with SET Error codes this merchant does not know.

The real bank refuses each request with a signed SET Error of a code no enum of this
build defines (as ``CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS`` was to the release before
it). It may not say the gateway did nothing (as UNSPECIFIED_FAILURE does not), so the
request stays pending and is asked again, whatever its kind; the metrics count it under
``other``. A verified answer whose result code is of a later release is read the same
way: ``test_unreadable_result_codes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

import gateway.admin
import gateway.answers
import gateway.authorize
import gateway.settlement
from clients.errors import ConfigError, OutcomeUnknown
from clients.merchant import metrics, outcome
from clients.merchant.gateway_client import served
from clients.merchant.metrics_labels import OTHER
from clients.merchant.records import Operation, OperationState, OrderState
from clients.merchant.runtime import Merchant
from setcore.error_message import build_error
from setcore.errors import ErrorCode, PeerError, fail
from setcore.gateway_admin import GatewayCertificate
from setpay.v1 import gateway_admin_pb2
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.metrics_support import samples_of, scrape_text, value
from tests.clients.test_purchase_flow import buy, offer

# A value no result-code enum of this build defines: a later release's code.
LATER = 99


def answering_later_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every SET Error the gateway answers carries LATER: signed by the
    gateway and naming the request, as any of its Errors."""

    def later_error(credentials: Any, code: int, **kwargs: Any) -> Any:
        return build_error(credentials, LATER, **kwargs)

    monkeypatch.setattr(gateway.answers, "build_error", later_error)


def refusing(*args: Any, **kwargs: Any) -> Any:
    """A check of the gateway's that fails, so that it answers with a SET Error."""
    raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "refused by the test")


def test_a_signed_error_of_a_later_code_leaves_the_batch_change_pending(
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A later release's ErrorCode may not say the gateway did nothing (as
    UNSPECIFIED_FAILURE does not): the change stays sent, at the fast pace, and the
    command given again, the gateway now answering, ends it."""
    merchant = make_merchant("m-later-error")
    monkeypatch.setattr(gateway.admin, "open_batch_admin_request", refusing)
    answering_later_errors(monkeypatch)
    caplog.set_level(logging.INFO, logger="setpay.merchant")
    with pytest.raises(OutcomeUnknown) as unknown:
        merchant.batches.administer(gateway_admin_pb2.BATCH_OPERATION_OPEN)
    assert "ErrorCode 99, a code of a later release" in str(unknown.value)
    (opening,) = merchant.store.batch_requests()
    assert (opening.state, opening.error_code) == (OperationState.SENT, 0)
    assert (opening.unverified, opening.retry_after_ms) == (0, 0)
    assert "outcome unknown, will retry" in caplog.text
    assert "refused by the gateway" not in caplog.text
    monkeypatch.undo()
    merchant.batches.administer(gateway_admin_pb2.BATCH_OPERATION_OPEN)
    (opened,) = merchant.store.batch_requests()
    assert (opened.rrpid, opened.state) == (opening.rrpid, OperationState.SUCCEEDED)


def test_a_signed_error_of_a_later_code_on_an_authorization_leaves_it_pending(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway may have placed the hold: the order is not failed, the wallet is told
    the order was received (never rejected, which would have the cardholder buy again),
    and the same AuthReq asked again is authorized."""
    merchant = make_merchant("m-later-error-auth")
    wallet = make_wallet(merchant)
    # The worker's scan (every few seconds) would otherwise race the test for the order.
    merchant.authorizer.stop(timeout=10)
    monkeypatch.setattr(gateway.authorize, "check_agreement", refusing)
    answering_later_errors(monkeypatch)
    record = buy(wallet, offer(merchant, 1234))
    assert (record.completion, record.refusal) == ("COMPLETION_CODE_ORDER_RECEIVED", "")
    xid = bytes.fromhex(record.xid)
    pending = merchant.store.order(xid)
    assert (pending.state, pending.error_code) == (OrderState.AUTHORIZING, 0)
    monkeypatch.undo()
    done = merchant.authorizer.authorize(xid)
    assert (done.state, done.auth_rrpid) == (OrderState.AUTHORIZED, pending.auth_rrpid)


@pytest.mark.parametrize(
    ("code", "final"),
    [
        (ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, True),
        (ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE, False),
        (LATER, False),
    ],
    ids=["a known refusal", "unspecified failure", "a later code"],
)
def test_only_a_known_error_code_is_a_final_refusal(code: int, final: bool) -> None:
    assert outcome.is_refusal(PeerError(code)) is final


def _capture(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    return lambda: merchant.settlement.capture(xid, 400)


def _credit(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    merchant.settlement.capture(xid, 400)
    return lambda: merchant.settlement.refund(xid, 100)


def _auth_reversal(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    return lambda: merchant.settlement.reverse_authorization(xid)


def _capture_reversal(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    capture = merchant.settlement.capture(xid, 400)
    return lambda: merchant.settlement.reverse_capture(capture.rrpid)


def _credit_reversal(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    merchant.settlement.capture(xid, 400)
    credit = merchant.settlement.refund(xid, 100)
    return lambda: merchant.settlement.reverse_credit(credit.rrpid)


# Each settlement operation: the check of the gateway's that refuses it, and the
# operation, once what it undoes is done.
OPERATIONS: dict[str, tuple[str, Callable[[Merchant, bytes], Callable[[], Operation]]]] = {
    "capture": ("open_capture_request", _capture),
    "credit": ("open_credit_request", _credit),
    "authorization reversal": ("open_auth_reversal_request", _auth_reversal),
    "capture reversal": ("open_capture_reversal_request", _capture_reversal),
    "credit reversal": ("open_credit_reversal_request", _credit_reversal),
}


@pytest.mark.parametrize("kind", list(OPERATIONS))
def test_a_signed_error_of_a_later_code_leaves_the_operation_sent(
    kind: str,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check, prepare = OPERATIONS[kind]
    merchant = make_merchant(f"m-later-{kind.replace(' ', '-')}")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    operation = prepare(merchant, xid)
    monkeypatch.setattr(gateway.settlement, check, refusing)
    answering_later_errors(monkeypatch)
    with pytest.raises(OutcomeUnknown, match="ErrorCode 99"):
        operation()
    (waiting,) = merchant.store.operations(state=OperationState.SENT)
    assert (waiting.error_code, waiting.unverified) == (0, 0)
    monkeypatch.undo()
    (answered,) = merchant.settlement.resume()
    assert (answered.rrpid, answered.state) == (waiting.rrpid, OperationState.SUCCEEDED)


def test_a_later_error_code_is_counted_as_other(page: int) -> None:
    @metrics.gateway_call("batch")
    def send() -> None:
        raise PeerError(LATER)

    with pytest.raises(PeerError):
        send()
    samples = samples_of(scrape_text(page))
    assert value(samples, "setpay_merchant_gateway_calls_total", kind="batch", result=OTHER) == 1
    assert not any(" " in dict(labels).get("result", "") for _, labels in samples)


def test_a_pcert_code_of_a_later_release_serves_no_certificate() -> None:
    answered = GatewayCertificate("setpay", "499999", LATER, None, None, ())
    with pytest.raises(ConfigError) as refused:
        served(answered)
    assert str(refused.value) == (
        "the gateway serves no certificate for brand setpay: PCertCode 99"
    )
