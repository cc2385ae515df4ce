"""Two threads that each chose to send one order's AuthReq, against the real gateway: the
one that comes second finds the first one's try and sends nothing, so that an answer
that did not verify counts once and its wait (``outcome.next_try``) stands.

Purchase (at once, or through the worker's queue) and the worker's scans each choose
from a read of the order; the order's lock keeps their sendings apart, and what the
second reads under it says whether the first has tried. Each race is made certain, not
left to timing: the thread that must come second is held until the first has sent.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from clients.merchant import authorizer as authorizer_module
from clients.merchant.config import AnswerMode
from clients.merchant.records import Order, OrderState
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.authorizer_support import purchase_against_scan
from tests.clients.merchant.tampering_support import TamperingGateway, unparseable
from tests.clients.test_purchase_flow import buy, offer

# Bounds every wait on the other thread: each comes within milliseconds (the worker's
# scans at the pace below); this only turns a hang into a failure on a loaded machine.
WAIT_SECONDS = 20.0
# The worker's pace here: its scan finds a purchased order within a blink.
FAST_RETRY_SECONDS = 0.05


def _until_sent(gateway: TamperingGateway) -> None:
    """Wait (bounded) until an AuthReq has been sent and answered."""
    give_up = time.monotonic() + WAIT_SECONDS
    while not gateway.sent("Authorize"):
        assert time.monotonic() < give_up, "the worker's scan never sent the AuthReq"
        time.sleep(FAST_RETRY_SECONDS)


def test_an_order_the_scan_sent_first_is_not_sent_again_from_the_queue(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's scan finds an order just purchased and sends it before the worker
    takes it from its queue, where Purchase put it: the answer that did not verify
    counts once, and the queued order is not sent again before its next try is due."""
    monkeypatch.setattr(authorizer_module, "RETRY_SECONDS", FAST_RETRY_SECONDS)
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-race-queue", AnswerMode.ORDER_RECEIVED)
    gateway.tamper("Authorize", unparseable, unparseable)
    authorizer = merchant.authorizer
    submit, authorize = authorizer.submit, authorizer.authorize
    drained = threading.Event()

    def after_the_scan(*args: Any) -> None:
        _until_sent(gateway)
        submit(*args)

    def taken_from_the_queue(*args: Any, **kwargs: Any) -> Order:
        try:
            return authorize(*args, **kwargs)
        finally:
            drained.set()

    monkeypatch.setattr(authorizer, "submit", after_the_scan)
    # In this answer mode only the worker's queue asks through ``authorize``.
    monkeypatch.setattr(authorizer, "authorize", taken_from_the_queue)
    record = buy(make_wallet(merchant), offer(merchant, 800))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    assert drained.wait(WAIT_SECONDS), "the worker never took the order from its queue"
    pending = merchant.store.order(bytes.fromhex(record.xid))
    assert (pending.state, pending.unverified) == (OrderState.AUTHORIZING, 1)
    assert gateway.sent("Authorize") == [pending.auth_request]


def test_a_purchase_sent_first_is_not_sent_again_by_a_scan_that_read_it_before(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scan reads an order while Purchase is sending it, and waits at its lock; the
    answer does not verify: the scan sends nothing and ends nothing, the answer counts
    once."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-race-scan", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)  # its scans are made by the test here
    gateway.tamper("Authorize", unparseable, unparseable)
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 800)).xid)
    answers, _ = purchase_against_scan(merchant, xid, monkeypatch)
    pending = merchant.store.order(xid)
    assert (pending.state, pending.unverified) == (OrderState.AUTHORIZING, 1)
    assert gateway.sent("Authorize") == [pending.auth_request]
    assert answers == {"purchase": pending, "scan": []}


def test_a_purchase_waiting_for_its_authorization_does_not_send_what_the_scan_sent(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wallet waits for the authorization, and the worker's scan finds the order
    purchased and sends it first: Purchase waits for that try and sends nothing; the
    answer did not verify, so the wallet hears "order received", and it counts once."""
    monkeypatch.setattr(authorizer_module, "RETRY_SECONDS", FAST_RETRY_SECONDS)
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-race-purchase", AnswerMode.AFTER_AUTHORIZATION)
    gateway.tamper("Authorize", unparseable, unparseable)
    authorize = merchant.authorizer.authorize

    def after_the_scan(*args: Any, **kwargs: Any) -> Order:
        _until_sent(gateway)
        return authorize(*args, **kwargs)

    # In this answer mode only Purchase asks through ``authorize``.
    monkeypatch.setattr(merchant.authorizer, "authorize", after_the_scan)
    record = buy(make_wallet(merchant), offer(merchant, 800))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    pending = merchant.store.order(bytes.fromhex(record.xid))
    assert (pending.state, pending.unverified) == (OrderState.AUTHORIZING, 1)
    assert gateway.sent("Authorize") == [pending.auth_request]
