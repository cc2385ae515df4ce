"""A serving merchant's resume rounds, against the real gateway: a start that finds the
gateway away still asks at once, once it is back, for every request put off after
answers that did not verify; and neither a close nor a SIGTERM while ``serve`` starts
waits out a round."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from clients.errors import OutcomeUnknown
from clients.merchant import authorizer as authorizer_module
from clients.merchant import runtime
from clients.merchant.config import AnswerMode
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import OperationState, OrderState
from clients.merchant.runtime import Merchant
from clients.merchant.store import MerchantStore
from gateway.bank import Bank
from gateway.servicer import PaymentGatewayServicer
from setcore.freshness import now_ms
from setpay.v1 import gateway_admin_pb2
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import GatewayOutage, restart
from tests.clients.merchant.tampering_support import (
    TamperingGateway,
    gateway_batches,
    gateway_hold,
    unparseable,
)
from tests.clients.merchant.test_merchant_cli import RUNNER, START_SECONDS, STOP_SECONDS
from tests.clients.test_purchase_flow import buy, offer

OPEN = gateway_admin_pb2.BATCH_OPERATION_OPEN
CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE
# Answers that did not verify, in a row, for each request put off: the next try is then
# 30 s * 2**3 = 4 minutes away (``outcome.next_try``), far past any wait below.
PUT_OFF_ANSWERS = 4
# The rounds' and the worker's pace in these tests: a round a few times a second.
FAST_SECONDS = 0.05
# Bounds every wait on the merchant's threads: each comes within a second or two; this
# only turns a hang into a failure on a loaded machine.
WAIT_SECONDS = 20.0


def _until(done: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + WAIT_SECONDS
    while not done():
        assert time.monotonic() < give_up, what
        time.sleep(FAST_SECONDS)


def _put_off(ask: Callable[[], object], times: int) -> None:
    """Ask ``times`` times; each answer is tampered, so none verifies."""
    for _ in range(times):
        # A command says so by raising; the worker's ``authorize`` returns the order.
        with contextlib.suppress(OutcomeUnknown):
            ask()


def test_a_start_with_the_gateway_away_asks_for_every_request_put_off_once_it_is_back(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two of each kind (authorization, capture, batch close) put off minutes after
    answers that did not verify. The merchant starts again; the gateway goes away just as
    it does (its certificates fetched), so its first rounds end at the first request
    each. Once the gateway is back, every one is asked for again at once, as a restart
    promises, not only the one each round reached: none waits out its backoff."""
    outage = GatewayOutage(bank)
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-away-at-start", AnswerMode.ORDER_RECEIVED, outage.target)
    merchant.authorizer.stop(timeout=10)  # the test asks for each authorization itself
    try:
        _put_off_all(merchant, make_wallet, gateway)
        orders = merchant.store.orders_in(OrderState.AUTHORIZING)
        operations = [op for o in merchant.store.orders_in(OrderState.AUTHORIZED)
                      for op in merchant.store.operations(o.xid)]  # fmt: skip
        changes = merchant.store.batch_requests(OperationState.SENT)
        assert len(orders) == len(operations) == len(changes) == 2
        for request in (*orders, *operations, *changes):
            assert request.unverified == PUT_OFF_ANSWERS
            assert request.retry_after_ms > now_ms() + 3 * 60_000
        directory = merchant.config.base_dir
        merchant.close()

        monkeypatch.setattr(runtime, "RESUME_SECONDS", FAST_SECONDS)
        monkeypatch.setattr(runtime, "RESUME_AFTER_MS", 0)
        monkeypatch.setattr(authorizer_module, "RETRY_SECONDS", FAST_SECONDS)
        caplog.clear()
        again = Merchant.open(load_merchant_config(directory))
        try:
            again.gateway_keys.current()  # what serve fetches first, while it is there
            outage.stop()
            again.serve()
            _until(
                lambda: any("2 unanswered authorizations" in m for m in caplog.messages),
                "the worker's first scan never met the gateway away",
            )
            assert any("2 unanswered operations" in m for m in caplog.messages)
            assert any("2 unanswered batch requests" in m for m in caplog.messages)
            outage.end(again)

            def all_answered() -> bool:
                states = [again.store.operation(op.rrpid).state for op in operations]
                waiting = again.store.batch_requests(OperationState.SENT)
                return not (again.authorizer.pending() or waiting or OperationState.SENT in states)

            _until(all_answered, "a request put off before the restart waited for its backoff")
        finally:
            again.close()
    finally:
        outage.release()
    for order in orders:  # each applied once, however many times it was asked for
        assert gateway_hold(bank, order.xid).transfers == {"authorization": 1}
    for operation in operations:
        assert gateway_hold(bank, operation.xid).transfers["capture"] == 1
    ledger = gateway_batches(bank, merchant.config.merchant_id)
    assert all(ledger[change.batch_id] == "closed" for change in changes)


def _put_off_all(merchant: Merchant, make_wallet: WalletFactory, gateway: TamperingGateway) -> None:
    """Two batch closes, two authorizations and two captures, each applied by the gateway
    and put off after PUT_OFF_ANSWERS answers that did not verify."""
    # Batches first: a capture opens one at the gateway, and a merchant has one open.
    for _ in range(2):
        batch = merchant.batches.administer(OPEN).batch_id
        gateway.tamper("BatchAdmin", unparseable)
        _put_off(lambda batch=batch: merchant.batches.administer(CLOSE, batch), 1)
    gateway.tamper("BatchAdmin", *[unparseable] * 2 * (PUT_OFF_ANSWERS - 1))
    _put_off(merchant.batches.resume, PUT_OFF_ANSWERS - 1)

    wallet = make_wallet(merchant)
    to_capture = [bytes.fromhex(buy(wallet, offer(merchant, 500)).xid) for _ in range(2)]
    for xid in to_capture:
        assert merchant.authorizer.authorize(xid).state is OrderState.AUTHORIZED
    to_authorize = [bytes.fromhex(buy(wallet, offer(merchant, 800)).xid) for _ in range(2)]
    gateway.tamper("Authorize", *[unparseable] * 2 * PUT_OFF_ANSWERS)
    for xid in to_authorize:
        _put_off(lambda xid=xid: merchant.authorizer.authorize(xid), PUT_OFF_ANSWERS)

    gateway.tamper("Capture", *[unparseable] * 2 * PUT_OFF_ANSWERS)
    for xid in to_capture:
        _put_off(lambda xid=xid: merchant.settlement.capture(xid), 1)
    _put_off(merchant.settlement.resume, PUT_OFF_ANSWERS - 1)
    assert not any(gateway.left(m) for m in ("BatchAdmin", "Authorize", "Capture"))


# -- a close during a round --------------------------------------------------------------

# Captures waiting when the gateway comes back, and how late it answers each: a round
# takes them one after the other, CAPTURES * SLOW_SECONDS at the least.
CAPTURES = 8
SLOW_SECONDS = 1.0


def captures_left_waiting(
    merchant: Merchant, make_wallet: WalletFactory, outage: GatewayOutage
) -> list[bytes]:
    """CAPTURES orders authorized, each captured while the gateway is away (left sent);
    their XIDs."""
    wallet = make_wallet(merchant)
    xids = [bytes.fromhex(buy(wallet, offer(merchant, 300)).xid) for _ in range(CAPTURES)]
    outage.stop()
    for xid in xids:
        with pytest.raises(OutcomeUnknown):
            merchant.settlement.capture(xid)
    return xids


class SlowGateway(PaymentGatewayServicer):
    """The bank's real gateway, answering each Capture ``delay`` seconds late (loaded)."""

    def __init__(self, bank: Bank, delay: float) -> None:
        super().__init__(bank)
        self.delay = delay
        self.reached = threading.Event()

    def Capture(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.reached.set()
        time.sleep(self.delay)
        return super().Capture(request, context)


def test_a_close_during_a_round_stops_it_after_the_request_in_flight(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Captures sent while the gateway was away; it comes back slow, and a round sends
    them one by one. The merchant closing then returns after the capture in flight, not
    after the round; the captures it did not reach stay sent, and the next start sends
    them: each applied once."""
    monkeypatch.setattr(runtime, "RESUME_SECONDS", FAST_SECONDS)
    monkeypatch.setattr(runtime, "RESUME_AFTER_MS", 0)
    outage = GatewayOutage(bank)
    slow = SlowGateway(bank.bank, SLOW_SECONDS)
    merchant = make_merchant("m-close-in-round", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    store = MerchantStore(merchant.config.store)  # read beside the merchant, and after it
    try:
        xids = captures_left_waiting(merchant, make_wallet, outage)
        outage.serve(slow)
        assert slow.reached.wait(WAIT_SECONDS), "no round sent a capture to the slow gateway"
        merchant.close()
        # Not timed (a loaded machine may take seconds to close anything): a close that
        # waited out the round would have sent every capture, and some still wait.
        states = [store.operations(xid)[0].state for xid in xids]
        assert OperationState.FAILED not in states and OperationState.SENT in states

        slow.delay = 0
        restart(merchant.config.base_dir).close()  # its start sends what still waits
        assert all(store.operations(xid)[0].state is OperationState.SUCCEEDED for xid in xids)
    finally:
        store.close()
        outage.release()
    for xid in xids:
        assert gateway_hold(bank, xid).transfers["capture"] == 1


def test_a_sigterm_during_the_start_up_round_ends_it_and_starts_nothing(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """``setpay merchant serve`` (a real process) starts on captures sent while the gateway
    was away; it comes back slow, and the start-up round sends them one by one before
    anything serves. A SIGTERM then ends the round after the capture in flight, and the
    process exits without serving; the next start sends the rest: each applied once.

    Before: the round went on to its end, every capture sent, then the service, resume
    thread and worker started, and only then closed."""
    outage = GatewayOutage(bank)
    slow = SlowGateway(bank.bank, SLOW_SECONDS)
    merchant = make_merchant("m-stop-at-start", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    directory = merchant.config.base_dir
    store = MerchantStore(merchant.config.store)
    try:
        xids = captures_left_waiting(merchant, make_wallet, outage)
        merchant.close()
        outage.serve(slow)
        process = subprocess.Popen(
            [sys.executable, "-c", RUNNER, "merchant", "--dir", str(directory), "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        )  # fmt: skip
        try:
            assert slow.reached.wait(START_SECONDS), "the start-up round sent no capture"
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=STOP_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, err
        assert "serving on port" not in out, "it served after a SIGTERM during its start"
        assert "stopped before serving" in out
        states = [store.operations(xid)[0].state for xid in xids]
        assert OperationState.FAILED not in states and OperationState.SENT in states

        slow.delay = 0
        restart(directory).close()  # its start sends what still waits
        assert all(store.operations(xid)[0].state is OperationState.SUCCEEDED for xid in xids)
    finally:
        store.close()
        outage.release()
    for xid in xids:
        assert gateway_hold(bank, xid).transfers["capture"] == 1
