"""A Purchase's authorization ends when its wallet's answer comes due (``authorize``'s
``answer_by``), whatever it waits for: the gateway, but also the order's lock held by
another thread, and the AuthReq not yet built. Once it is due nothing is built nor sent,
no gateway call is counted or logged as failed, and the order stays pending for the worker.
Against the real gateway and a real merchant."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from clients import transport
from clients.merchant.config import AnswerMode
from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from clients.wallet import purchases
from setpay.v1 import purchase_pb2
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

# Bounds every wait on another thread; a wait the test expects to end early ends in well
# under a second.
WAIT_SECONDS = 20.0
# How long the order's lock is held by another thread: far past the answer's due time.
HELD_SECONDS = 5.0


def _purchased(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> tuple[Merchant, bytes, list[float]]:
    """A merchant, an order purchased (its AuthReq neither built nor sent), and the
    deadlines of the Authorize calls the merchant makes from then on."""
    merchant = make_merchant(name, AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)  # the test authorizes; no worker races it
    record = buy(make_wallet(merchant), offer(merchant, 700))
    xid = bytes.fromhex(record.xid)
    assert merchant.store.order(xid).state is OrderState.PURCHASED
    return merchant, xid, _gateway_calls(monkeypatch, merchant)


def _gateway_calls(monkeypatch: pytest.MonkeyPatch, merchant: Merchant) -> list[float]:
    """The deadlines of the Authorize calls the merchant makes from now on."""
    calls: list[float] = []
    real = merchant.gateway.authorize

    def counted(request: bytes, state: Any, **deadline: float) -> Any:
        calls.append(deadline.get("deadline", -1.0))
        return real(request, state, **deadline)

    monkeypatch.setattr(merchant.gateway, "authorize", counted)
    return calls


def test_nothing_is_built_or_sent_once_the_answer_is_due(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant, xid, calls = _purchased(make_merchant, make_wallet, monkeypatch, "m-due")
    order = merchant.authorizer.authorize(xid, answer_by=time.monotonic() - 0.5)
    assert order.state is OrderState.PURCHASED and order.auth_request is None
    # No call: none is counted (the gateway client's metrics wrap it) nor logged as failed.
    assert calls == []
    # The worker finds it as any order purchased.
    assert merchant.authorizer.authorize(xid).state is OrderState.AUTHORIZED


def test_the_wait_for_another_thread_ends_when_the_answer_is_due(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant, xid, calls = _purchased(make_merchant, make_wallet, monkeypatch, "m-due-lock")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with merchant.authorizer._exclusive(xid):  # another thread authorizing the order
            holding.set()
            release.wait(HELD_SECONDS)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(WAIT_SECONDS)
        started = time.monotonic()
        order = merchant.authorizer.authorize(xid, answer_by=started + 0.3)
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join(WAIT_SECONDS)
    assert took < HELD_SECONDS / 2, f"waited {took:.1f} s for the order's lock"
    assert order.state is OrderState.PURCHASED and calls == []


class _NoDeadline(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Sends every call without a deadline, as a client that sets none does."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_Details(details), request)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, sent: Any) -> None:
        self.method, self.metadata, self.credentials = sent.method, sent.metadata, sent.credentials
        self.wait_for_ready, self.compression = sent.wait_for_ready, sent.compression
        self.timeout = None


def test_a_purchase_sent_without_a_deadline_is_authorized(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: grpcio gives a call without a deadline some 292 years, ``answer_by``
    inherited it, and the wait for the order's lock raised OverflowError: the Purchase
    failed (UNSPECIFIED_FAILURE) with the gateway healthy."""
    merchant = make_merchant("m-no-deadline")
    monkeypatch.setattr(
        purchases,
        "Caller",
        lambda channel, *a: transport.Caller(grpc.intercept_channel(channel, _NoDeadline()), *a),
    )
    record = buy(make_wallet(merchant), offer(merchant, 900))
    assert record.completion == purchase_pb2.CompletionCode.Name(
        purchase_pb2.COMPLETION_CODE_AUTHORIZATION_PERFORMED
    )
