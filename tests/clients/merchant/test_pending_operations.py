"""An operation sent and not answered may have been applied: the merchant's own checks
count it as applied where that leaves less to take, and refuse, naming it, what the
gateway would refuse should it turn out applied. Against the real gateway: no operation
here ends refused, whatever the order in which the pending ones reach it."""

from __future__ import annotations

import pytest

from clients.errors import OrderStateError, OutcomeUnknown
from clients.merchant.checkout import settled_amounts
from clients.merchant.records import OperationKind, OperationState, OrderState
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import GatewayOutage
from tests.clients.merchant.tampering_support import (
    EVERY_TAMPERING,
    TamperingGateway,
    gateway_hold,
)
from tests.clients.test_purchase_flow import buy, offer


def _short(rrpid: bytes) -> str:
    return rrpid.hex()[:8]


def test_a_refund_waits_for_a_pending_refund(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Captured 1000, a refund of 600 unanswered (the gateway made it): no other refund is
    sent until it is answered, neither the same one given again nor the 400 left; once
    answered, the 400 is refunded (``test_settlement_pending_again``)."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-pending-credit")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    merchant.settlement.capture(xid)
    gateway.tamper("Credit", EVERY_TAMPERING[0])
    with pytest.raises(OutcomeUnknown):
        merchant.settlement.refund(xid, 600)
    (pending,) = [op for op in merchant.store.operations(xid) if op.kind is OperationKind.CREDIT]
    for amount in (600, None):
        with pytest.raises(OrderStateError) as caught:
            merchant.settlement.refund(xid, amount)
        assert f"credit {_short(pending.rrpid)} of 600 is sent and not answered" in str(
            caught.value
        )
    assert len(gateway.sent("Credit")) == 1  # refused before anything was sent

    (done,) = merchant.settlement.resume()
    assert (done.rrpid, done.state) == (pending.rrpid, OperationState.SUCCEEDED)
    with pytest.raises(OrderStateError, match=r"600 cannot be refunded \(400 captured and not"):
        merchant.settlement.refund(xid, 600)
    rest = merchant.settlement.refund(xid)
    assert (rest.state, rest.result_amount) == (OperationState.SUCCEEDED, 400)
    assert settled_amounts(merchant.store, xid) == (1000, 1000)
    hold = gateway_hold(bank, xid)
    assert (hold.credited, hold.transfers["credit"]) == (1000, 2)


def test_a_capture_reversal_counts_a_pending_refund_as_made(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Captures of 600 and 400, a refund of 500 unanswered: reversing the 600 would undo
    money already refunded, which the gateway refuses; the 400 can still be reversed."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-pending-credit-caprev")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    larger = merchant.settlement.capture(xid, 600)
    smaller = merchant.settlement.capture(xid, 400)
    gateway.tamper("Credit", EVERY_TAMPERING[0])
    with pytest.raises(OutcomeUnknown):
        merchant.settlement.refund(xid, 500)
    (pending,) = [op for op in merchant.store.operations(xid) if op.kind is OperationKind.CREDIT]
    with pytest.raises(OrderStateError, match=f"this capture was 600; .*{_short(pending.rrpid)}"):
        merchant.settlement.reverse_capture(larger.rrpid)
    assert gateway.sent("CaptureReversal") == []
    reversal = merchant.settlement.reverse_capture(smaller.rrpid)
    assert reversal.state is OperationState.SUCCEEDED
    merchant.settlement.resume()
    assert settled_amounts(merchant.store, xid) == (600, 500)
    assert all(op.state is OperationState.SUCCEEDED for op in merchant.store.operations(xid))


def test_a_capture_counts_a_pending_authorization_reversal_as_made(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reversal down to 300 unanswered (the gateway made it): only 300 is left to
    capture, and the reversal's answer, when it comes, still fits."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-pending-authrev")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    gateway.tamper("AuthReversal", EVERY_TAMPERING[0])
    with pytest.raises(OutcomeUnknown):
        merchant.settlement.reverse_authorization(xid, 300)
    (pending,) = merchant.store.operations(xid)
    with pytest.raises(OrderStateError) as caught:
        merchant.settlement.capture(xid, 400)
    assert "400 cannot be captured (300 left to capture)" in str(caught.value)
    assert f"auth-reversal {_short(pending.rrpid)} keeping 300" in str(caught.value)
    assert gateway.sent("Capture") == []

    capture = merchant.settlement.capture(xid)
    assert (capture.state, capture.result_amount) == (OperationState.SUCCEEDED, 300)
    (done,) = merchant.settlement.resume()
    assert (done.rrpid, done.state) == (pending.rrpid, OperationState.SUCCEEDED)
    order = merchant.store.order(xid)
    assert order.authorization is not None and order.authorization.amount.minor == 300
    hold = gateway_hold(bank, xid)
    assert (hold.amount, hold.captured) == (300, 300)


def test_an_authorization_reversal_waits_for_a_pending_capture(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """A capture met the gateway down and never reached it. Reversing the whole
    authorization now would reach the gateway first and release the hold, and the
    capture, resumed, would be refused: the goods shipped, the money gone. So the
    reversal is refused, naming the capture, until the capture is answered."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-pending-capture", gateway_target=outage.target)
    try:
        xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
        outage.stop()
        with pytest.raises(OutcomeUnknown):
            merchant.settlement.capture(xid, 400)
        (pending,) = merchant.store.operations(xid)
        outage.end(merchant)
        with pytest.raises(OrderStateError) as caught:
            merchant.settlement.reverse_authorization(xid, 0)
        assert f"capture {_short(pending.rrpid)} of 400 (sent, outcome unknown" in str(caught.value)
        assert gateway_hold(bank, xid).transfers == {"authorization": 1}  # nothing sent

        (done,) = merchant.settlement.resume()
        assert (done.rrpid, done.state, done.result_amount) == (
            pending.rrpid, OperationState.SUCCEEDED, 400,
        )  # fmt: skip
        assert merchant.store.order(xid).state is OrderState.AUTHORIZED
        assert gateway_hold(bank, xid).captured == 400
    finally:
        merchant.close()
        outage.release()
