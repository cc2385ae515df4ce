"""A Purchase answered after authorization waits for the gateway only as long as its wallet
waits for the PRes: past that, the wallet hears "order received" in time and the order
stays authorizing, for the worker to send the same AuthReq again.

The gateway is the bank's own on a port of its own (``GatewayOutage``), whose Authorize is
held until the test lets it go: a gateway slower than the wallet's patience.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.merchant.config import load as load_config
from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from clients.wallet import purchases
from gateway.bank import Bank
from gateway.cpu_turn import PROCESS_TURN
from gateway.servicer import PaymentGatewayServicer
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    new_wallet,
    register_merchant,
)
from tests.clients.merchant.outage_support import GatewayOutage
from tests.clients.test_purchase_flow import buy, offer

# The wallet's patience in this test, far below the gateway's Authorize deadline (30 s) so
# that only the wallet's deadline can end the merchant's wait.
WALLET_SECONDS = 4.0
# Longer than any test: an Authorize still held after this is a bug, not a slow machine.
HOLD_SECONDS = 60.0


class _HeldAuthorize(PaymentGatewayServicer):
    """The bank's PaymentGateway, whose Authorize waits for ``release`` before deciding."""

    def __init__(self, bank: Bank) -> None:
        super().__init__(bank)
        self.release = threading.Event()

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        with PROCESS_TURN.aside():  # as a handler waiting on the issuer would
            self.release.wait(HOLD_SECONDS)
        return super().Authorize(request, context)


@pytest.fixture
def slow_gateway(bank: RunningBank, tmp_path: Path) -> Iterator[tuple[Merchant, _HeldAuthorize]]:
    outage = GatewayOutage(bank)
    directory = tmp_path / "m-deadline"
    configure_merchant(bank, directory, "m-deadline", gateway_target=outage.target)
    register_merchant(directory)
    merchant = Merchant.open(load_config(directory))
    held = _HeldAuthorize(bank.bank)
    try:
        merchant.serve()  # its start-up fetches the gateway's certificates, answered at once
        outage.stop()
        outage.serve(held)
        yield merchant, held
    finally:
        held.release.set()
        merchant.close()
        outage.release()


def test_the_wallet_hears_order_received_before_its_deadline(
    bank: RunningBank,
    tmp_path: Path,
    slow_gateway: tuple[Merchant, _HeldAuthorize],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant, _ = slow_gateway
    monkeypatch.setattr(purchases, "PURCHASE_DEADLINE_SECONDS", WALLET_SECONDS)
    wallet = new_wallet(bank, tmp_path / "w", f"127.0.0.1:{merchant.port}")
    try:
        initiation = offer(merchant, 1250)
        started = time.monotonic()
        record = buy(wallet, initiation)
        took = time.monotonic() - started
    finally:
        wallet.close()
    assert record.completion == purchase_pb2.CompletionCode.Name(
        purchase_pb2.COMPLETION_CODE_ORDER_RECEIVED
    )
    assert took < WALLET_SECONDS
    (order,) = (o for o in merchant.store.orders_in(*OrderState) if o.lid_m == initiation.lid_m)
    # Its AuthReq is with the gateway, the answer not heard: the worker sends it again.
    assert order.state is OrderState.AUTHORIZING
