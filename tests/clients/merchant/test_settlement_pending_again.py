"""A capture or refund command given again while the one it sent is unanswered.

Its first run ended "outcome unknown, will retry" (exit 4): the request stays sent, and
``serve`` sends the same bytes again. The same command given again is refused, naming
the pending one and saying ``serve`` sends it: built afresh under a new RRPID, it would
be a second request beside the first, and the gateway would apply both (a refund paid
twice, a partial capture taken twice). Against the real gateway: its ledger holds each
exactly once.
"""

from __future__ import annotations

import pytest

from clients.errors import OrderStateError, OutcomeUnknown
from clients.merchant.checkout import settled_amounts
from clients.merchant.config import AnswerMode
from clients.merchant.records import OperationKind, OperationState
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import GatewayOutage, restart
from tests.clients.merchant.tampering_support import (
    EVERY_TAMPERING,
    TamperingGateway,
    gateway_hold,
)
from tests.clients.test_purchase_flow import buy, offer


def _short(rrpid: bytes) -> str:
    return rrpid.hex()[:8]


def test_a_capture_given_again_waits_for_the_unanswered_one(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Authorized 1000; the gateway takes a capture of 400 but its answer is lost. The
    same capture given again, and a capture of all that is left, are refused, naming the
    pending one; resumed, it is the only capture the gateway holds."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-capture-again")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    gateway.tamper("Capture", EVERY_TAMPERING[0])
    with pytest.raises(OutcomeUnknown, match="outcome unknown, will retry"):
        merchant.settlement.capture(xid, 400)
    (pending,) = merchant.store.operations(xid)
    for amount in (400, None):
        with pytest.raises(OrderStateError) as caught:
            merchant.settlement.capture(xid, amount)
        message = str(caught.value)
        assert f"capture {_short(pending.rrpid)} of 400 is sent and not answered" in message
        assert "`setpay merchant serve` sends it again" in message
    assert merchant.store.operations(xid) == [pending]  # nothing stored
    assert len(gateway.sent("Capture")) == 1  # nothing sent

    (done,) = merchant.settlement.resume()
    assert (done.rrpid, done.state, done.result_amount) == (
        pending.rrpid, OperationState.SUCCEEDED, 400,
    )  # fmt: skip
    hold = gateway_hold(bank, xid)
    assert (hold.captured, hold.transfers["capture"]) == (400, 1)
    # Answered, it no longer stands in the way of another capture.
    rest = merchant.settlement.capture(xid)
    assert (rest.state, rest.result_amount) == (OperationState.SUCCEEDED, 600)
    hold = gateway_hold(bank, xid)
    assert (hold.captured, hold.transfers["capture"]) == (1000, 2)


def test_a_refund_given_again_after_an_outage_is_paid_once(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """Captured 1000; a refund of 300 meets the gateway down. Back, the same refund given
    again is refused; ``serve``'s round sends the first, and the cardholder gets 300."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-refund-again", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    try:
        xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
        assert merchant.settlement.capture(xid).state is OperationState.SUCCEEDED
        outage.stop()
        with pytest.raises(OutcomeUnknown):
            merchant.settlement.refund(xid, 300)
        (pending,) = [o for o in merchant.store.operations(xid) if o.kind is OperationKind.CREDIT]
        outage.end(merchant)
        with pytest.raises(OrderStateError, match=f"credit {_short(pending.rrpid)} of 300 is"):
            merchant.settlement.refund(xid, 300)
        assert gateway_hold(bank, xid).transfers.get("credit", 0) == 0  # nothing sent

        (done,) = merchant.settlement.resume()
        assert (done.rrpid, done.state) == (pending.rrpid, OperationState.SUCCEEDED)
        credits = [o for o in merchant.store.operations(xid) if o.kind is OperationKind.CREDIT]
        assert credits == [done]
        assert settled_amounts(merchant.store, xid) == (1000, 300)
        hold = gateway_hold(bank, xid)
        assert (hold.credited, hold.transfers["credit"]) == (300, 1)
    finally:
        merchant.close()
        outage.release()


def test_the_refund_command_given_again_after_exit_4_is_refused(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through the CLI: the gateway makes the refund, its answer does not verify (exit 4);
    the operator gives the same command again: exit 1, the pending refund named, nothing
    sent; ``serve`` then settles the first, and the ledger credited 300 once."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-cli-refund-again")
    base = merchant.config.base_dir
    record = buy(make_wallet(merchant), offer(merchant, 1000))
    xid = bytes.fromhex(record.xid)
    merchant.settlement.capture(xid, 1000)
    merchant.close()
    argv = ["merchant", "--dir", str(base), "refund", record.xid[:8], "--amount", "300"]
    gateway.tamper("Credit", EVERY_TAMPERING[0])
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (4, "")
    assert "outcome unknown, will retry" in err
    status, out, err = run_cli(argv, capsys)
    served = restart(base)
    try:
        credits = [o for o in served.store.operations(xid) if o.kind is OperationKind.CREDIT]
    finally:
        served.close()
    assert (status, out) == (1, ""), "the command given again sent a second refund"
    (credit,) = credits
    assert err.startswith(f"setpay merchant: order {record.xid[:8]}: credit ")
    assert f"credit {_short(credit.rrpid)} of 300 is sent and not answered" in err
    assert "`setpay merchant serve` sends it again" in err
    assert len(gateway.sent("Credit")) == 2  # the first, and serve's resend of its bytes
    assert gateway.sent("Credit")[0] == gateway.sent("Credit")[1] == credit.request
    assert (credit.state, credit.result_amount) == (OperationState.SUCCEEDED, 300)
    hold = gateway_hold(bank, xid)
    assert (hold.credited, hold.transfers["credit"]) == (300, 1)
