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
from clients.merchant import authorizer as authorizer_module
from clients.merchant import outcome, runtime
from clients.merchant.config import AnswerMode
from clients.merchant.records import Operation, OperationKind, OperationState, OrderState
from clients.merchant.runtime import Merchant
from setcore.errors import ProtocolError
from setcore.freshness import now_ms
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import restart
from tests.clients.merchant.tampering_support import (
    EVERY_TAMPERING,
    TamperingGateway,
    gateway_hold,
    replayed,
    unparseable,
)
from tests.clients.test_purchase_flow import buy, offer
from tests.clocks import clocks_moved

# Bounds the wait for a restarted merchant's worker to authorize (it scans at start).
WORKER_WAIT_SECONDS = 20.0
# The background retries' pace in the tests that count them, and how long those watch:
# at that pace, retries that never wait would send a request some twenty times.
FAST_RETRY_SECONDS = 0.05
WATCH_SECONDS = 1.0


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
    assert ": sent (outcome unknown, will retry: 1 answer did not verify, next try 20" in (
        operation_line(sent)
    )
    (done,) = merchant.settlement.resume()
    assert done.state is OperationState.SUCCEEDED and done.result_amount == 1000
    assert gateway_hold(bank, xid).transfers["capture"] == 1


def _sends_while_watched(gateway: TamperingGateway, method: str) -> int:
    """How many more requests to ``method`` the background retries sent in WATCH_SECONDS."""
    before = len(gateway.sent(method))
    time.sleep(WATCH_SECONDS)
    return len(gateway.sent(method)) - before


def _sent_again(gateway: TamperingGateway, method: str, times: int) -> None:
    """Wait (bounded) until ``method`` has had ``times`` requests in all."""
    give_up = time.monotonic() + WORKER_WAIT_SECONDS
    while len(gateway.sent(method)) < times:
        assert time.monotonic() < give_up, f"{method} was not sent again"
        time.sleep(FAST_RETRY_SECONDS)


def test_an_authorization_whose_answers_do_not_verify_is_asked_again_less_and_less_often(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The gateway answers an AuthReq with the same bytes every time: one that did not
    verify is not sent again at the worker's pace, logging an error each time until the
    hold expires, but once due (a wait that doubles at each such answer); ``setpay
    merchant orders`` marks it meanwhile. Once the answer verifies, the order is
    authorized: one hold."""
    monkeypatch.setattr(authorizer_module, "RETRY_SECONDS", FAST_RETRY_SECONDS)
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-unverified-backoff", AnswerMode.ORDER_RECEIVED)
    gateway.tamper("Authorize", unparseable, unparseable)
    record = buy(make_wallet(merchant), offer(merchant, 800))
    xid = bytes.fromhex(record.xid)
    _sent_again(gateway, "Authorize", 1)
    assert _sends_while_watched(gateway, "Authorize") == 0
    first = merchant.store.order(xid)
    assert (first.state, first.unverified) == (OrderState.AUTHORIZING, 1)
    assert first.retry_after_ms - now_ms() > outcome.UNVERIFIED_FIRST_WAIT_MS // 2
    status, out, _ = run_cli(["merchant", "--dir", str(merchant.config.base_dir), "orders"], capsys)
    (line,) = [line for line in out.splitlines() if line.startswith(record.xid[:8])]
    assert status == 0 and "authorizing" in line
    assert "[authorization: 1 answer did not verify, next try 20" in line

    clocks_moved(monkeypatch, first.retry_after_ms - now_ms())  # due now
    _sent_again(gateway, "Authorize", 2)
    assert _sends_while_watched(gateway, "Authorize") == 0
    second = merchant.store.order(xid)
    assert (second.state, second.unverified) == (OrderState.AUTHORIZING, 2)
    assert second.retry_after_ms - first.retry_after_ms >= 2 * outcome.UNVERIFIED_FIRST_WAIT_MS

    clocks_moved(monkeypatch, second.retry_after_ms - now_ms())  # due again: the true answer
    give_up = time.monotonic() + WORKER_WAIT_SECONDS
    while (done := merchant.store.order(xid)).state is OrderState.AUTHORIZING:
        assert time.monotonic() < give_up, "the due authorization was never sent again"
        time.sleep(FAST_RETRY_SECONDS)
    assert done.state is OrderState.AUTHORIZED
    assert gateway.sent("Authorize") == [first.auth_request] * 3
    assert gateway_hold(bank, xid).transfers == {"authorization": 1}


def test_a_settlement_answer_that_did_not_verify_is_not_asked_for_at_every_round(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A capture whose answer did not verify waits its turn (``outcome.next_try``) in a
    serving merchant's rounds, and ``setpay merchant orders`` names it on its order's
    line; a merchant starting sends it at once."""
    monkeypatch.setattr(runtime, "RESUME_SECONDS", FAST_RETRY_SECONDS)
    # The rounds leave the command's own sending alone however long it takes on a loaded
    # machine; once it is done, they could send the capture again at every round.
    monkeypatch.setattr(runtime, "RESUME_AFTER_MS", 3_600_000)
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-unverified-rounds")
    record = buy(make_wallet(merchant), offer(merchant, 1000))
    xid = bytes.fromhex(record.xid)
    gateway.tamper("Capture", *[unparseable] * 50)
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    assert run_cli([*base, "capture", record.xid[:8]], capsys)[0] == 4
    monkeypatch.setattr(runtime, "RESUME_AFTER_MS", 0)
    assert _sends_while_watched(gateway, "Capture") == 0
    (sent,) = merchant.store.operations(xid)
    assert (sent.state, sent.unverified) == (OperationState.SENT, 1)
    status, out, _ = run_cli([*base, "orders"], capsys)
    (line,) = [line for line in out.splitlines() if line.startswith(record.xid[:8])]
    assert status == 0
    assert f"[capture {sent.rrpid.hex()[:8]}: 1 answer did not verify, next try 20" in line
    assert len(gateway.sent("Capture")) == 1

    merchant.close()
    again = restart(merchant.config.base_dir)  # sends every waiting request at once
    again.close()
    assert gateway.sent("Capture") == [sent.request] * 2
