"""A Purchase answered after authorization waits for the gateway only as long as its wallet
waits for the PRes: past that, the wallet hears "order received" in time and the order
stays authorizing, for the worker to send the same AuthReq again.

The gateway is the bank's own on a port of its own (``held_gateway``), whose Authorize is
held until the test lets it go: a gateway slower than the wallet's patience.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from clients.wallet import purchases
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import RunningBank, new_wallet
from tests.clients.merchant.outage_support import HeldAuthorize, held_gateway
from tests.clients.test_purchase_flow import buy, offer

# The wallet's patience in this test, far below the gateway's Authorize deadline (30 s) so
# that only the wallet's deadline can end the merchant's wait.
WALLET_SECONDS = 4.0


@pytest.fixture
def slow_gateway(bank: RunningBank, tmp_path: Path) -> Iterator[tuple[Merchant, HeldAuthorize]]:
    with held_gateway(bank, tmp_path / "m-deadline", "m-deadline") as served:
        yield served


def test_the_wallet_hears_order_received_before_its_deadline(
    bank: RunningBank,
    tmp_path: Path,
    slow_gateway: tuple[Merchant, HeldAuthorize],
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
