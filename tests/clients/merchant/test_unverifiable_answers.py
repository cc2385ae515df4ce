"""Gateway answers the merchant cannot verify leave the request pending, outcome unknown;
the same bytes, sent again to a gateway that answers truly, complete it exactly once.

The real gateway decides and commits every request here; only what reaches the merchant
is tampered with (``tampering_support``). Its ledger shows one hold per order and one
transfer per operation, however many times the merchant asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cli.merchant import operation_line
from clients.errors import OutcomeUnknown
from clients.merchant.config import AnswerMode
from clients.merchant.records import Operation, OperationKind, OperationState, OrderState
from clients.merchant.runtime import Merchant
from setcore.errors import ProtocolError
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import restart
from tests.clients.merchant.tampering_support import (
    EVERY_TAMPERING,
    TamperingGateway,
    gateway_hold,
    replayed,
)
from tests.clients.test_purchase_flow import buy, offer

# Bounds the wait for a restarted merchant's worker to authorize (it scans at start).
WORKER_WAIT_SECONDS = 20.0


def _warnings_naming(caplog: pytest.LogCaptureFixture, rrpid: bytes) -> list[str]:
    """The merchant's warnings and errors that name a request (by its short id)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "setpay.merchant"
        and r.levelno >= logging.WARNING
        and rrpid.hex()[:8] in r.getMessage()
    ]


def test_an_unverifiable_authorization_stays_pending_and_places_one_hold(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway authorized, but no answer the merchant gets verifies: the order stays
    authorizing (the waiting cardholder hears "order received", not "rejected"), through
    every try and a restart, until the true answer to the same AuthReq authorizes it."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-unverified-auth", AnswerMode.AFTER_AUTHORIZATION)
    merchant.authorizer.stop(timeout=10)  # its scans would race the test for the order
    wallet = make_wallet(merchant)
    earlier = buy(wallet, offer(merchant, 500))  # a true AuthRes, to replay for another order
    assert earlier.auth_code == "AUTH_CODE_APPROVED"
    gateway.tamper("Authorize", replayed, *EVERY_TAMPERING)
    record = buy(wallet, offer(merchant, 800))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    xid = bytes.fromhex(record.xid)
    pending = merchant.store.order(xid)
    assert pending.state is OrderState.AUTHORIZING and pending.error_code == 0
    assert pending.auth_rrpid is not None
    while gateway.left("Authorize"):
        assert merchant.authorizer.authorize(xid).state is OrderState.AUTHORIZING
    logged = _warnings_naming(caplog, pending.auth_rrpid)
    assert len(logged) == 1 + len(EVERY_TAMPERING)
    assert all(
        "outcome unknown, will retry (the gateway's answer did not verify" in m for m in logged
    )
    assert gateway_hold(bank, xid).amount == 800  # the gateway did authorize

    # The merchant stops (or dies) here; started again, its worker finds the order.
    merchant.close()
    again = restart(merchant.config.base_dir)
    try:
        give_up = time.monotonic() + WORKER_WAIT_SECONDS
        while (done := again.store.order(xid)).state is OrderState.AUTHORIZING:
            assert time.monotonic() < give_up, "the pending authorization was never sent again"
            time.sleep(0.1)
    finally:
        again.close()
    assert done.state is OrderState.AUTHORIZED and done.auth_rrpid == pending.auth_rrpid
    assert done.authorization is not None and done.authorization.amount.minor == 800
    # The same bytes every time, the first try and five more; one hold, placed once.
    tries = 1 + len(EVERY_TAMPERING) + 1
    assert gateway.sent("Authorize")[1:] == [pending.auth_request] * tries
    hold = gateway_hold(bank, xid)
    assert (hold.amount, hold.pending, hold.transfers) == (800, 800, {"authorization": 1})


@dataclass(frozen=True)
class Case:
    """One settlement operation: what comes before it, and the operation itself."""

    method: str
    kind: OperationKind
    start: Callable[[Merchant, bytes], Callable[[], Operation]]
    #: (ledger transfer kind, the hold's figure it moves, its value once applied once)
    applied: tuple[str, str, int]


def _capture(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    return lambda: merchant.settlement.capture(xid, 400)


def _auth_reversal(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    return lambda: merchant.settlement.reverse_authorization(xid, 300)


def _capture_reversal(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    captured = merchant.settlement.capture(xid, 400)
    return lambda: merchant.settlement.reverse_capture(captured.rrpid)


def _credit(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    merchant.settlement.capture(xid, 400)
    return lambda: merchant.settlement.refund(xid, 100)


def _credit_reversal(merchant: Merchant, xid: bytes) -> Callable[[], Operation]:
    merchant.settlement.capture(xid, 400)
    credited = merchant.settlement.refund(xid, 100)
    return lambda: merchant.settlement.reverse_credit(credited.rrpid)


CASES = {
    "capture": Case("Capture", OperationKind.CAPTURE, _capture, ("capture", "captured", 400)),
    "auth-reversal": Case(
        "AuthReversal",
        OperationKind.AUTH_REVERSAL,
        _auth_reversal,
        ("authorization-reversal", "amount", 300),
    ),
    "capture-reversal": Case(
        "CaptureReversal",
        OperationKind.CAPTURE_REVERSAL,
        _capture_reversal,
        ("capture-reversal", "capture_reversed", 400),
    ),
    "credit": Case("Credit", OperationKind.CREDIT, _credit, ("credit", "credited", 100)),
    "credit-reversal": Case(
        "CreditReversal",
        OperationKind.CREDIT_REVERSAL,
        _credit_reversal,
        ("credit-reversal", "credit_reversed", 100),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_an_unverifiable_settlement_answer_leaves_the_operation_pending_and_applied_once(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    """The gateway applied the operation, but no answer the merchant gets verifies: the
    command hears "outcome unknown, will retry", the operation stays sent through every
    resume, and the true answer to the same bytes settles it; the gateway applied it once."""
    case = CASES[name]
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant(f"m-unverified-{name}")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    operation = case.start(merchant, xid)
    gateway.tamper(case.method, *EVERY_TAMPERING)
    with pytest.raises(OutcomeUnknown, match="outcome unknown, will retry") as caught:
        operation()
    assert isinstance(caught.value.cause, ProtocolError)
    (sent,) = [op for op in merchant.store.operations(xid) if op.kind is case.kind]
    assert sent.state is OperationState.SENT
    assert sent.rrpid.hex()[:8] in str(caught.value)
    while gateway.left(case.method):
        assert merchant.settlement.resume() == []
        assert merchant.store.operation(sent.rrpid).state is OperationState.SENT
    logged = _warnings_naming(caplog, sent.rrpid)
    assert len(logged) == len(EVERY_TAMPERING)
    assert all(
        "outcome unknown, will retry (the gateway's answer did not verify" in m for m in logged
    )

    (done,) = merchant.settlement.resume()
    assert (done.rrpid, done.state) == (sent.rrpid, OperationState.SUCCEEDED)
    assert merchant.settlement.resume() == []
    assert gateway.sent(case.method) == [sent.request] * (len(EVERY_TAMPERING) + 1)
    transfer, figure, value = case.applied
    hold = gateway_hold(bank, xid)
    assert hold.transfers[transfer] == 1 and getattr(hold, figure) == value


def test_the_capture_command_says_outcome_unknown_not_failed(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``setpay merchant capture`` whose answer does not verify: it says the outcome is
    unknown and will be retried, exits 4 (not 1, a refusal), and leaves the capture for
    the next resume."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-unverified-cli")
    record = buy(make_wallet(merchant), offer(merchant, 1000))
    gateway.tamper("Capture", EVERY_TAMPERING[0])
    status, out, err = run_cli(
        ["merchant", "--dir", str(merchant.config.base_dir), "capture", record.xid[:8]], capsys
    )
    xid = bytes.fromhex(record.xid)
    (sent,) = merchant.store.operations(xid)
    assert status == 4 and out == ""
    assert err.startswith(f"setpay merchant: capture {sent.rrpid.hex()[:8]} for order ")
    assert "outcome unknown, will retry" in err and "failed" not in err
    assert sent.state is OperationState.SENT
    assert ": sent (outcome unknown, will retry), " in operation_line(sent)
    (done,) = merchant.settlement.resume()
    assert done.state is OperationState.SUCCEEDED and done.result_amount == 1000
    assert gateway_hold(bank, xid).transfers["capture"] == 1
