"""Purchases waiting on the gateway never hold every thread of the Merchant service: past
``gateway_waits`` a Purchase is answered "order received" at once, its authorization left
to the worker, so that a PInit or an Inquiry admitted behind them finds a thread.

Before: with as many Purchases waiting on a slow gateway as threads, an admitted Inquiry
waited in the queue until its own deadline (DEADLINE_EXCEEDED). Real merchant (two
threads: one may wait on the gateway), wallets and bank; the gateway holds Authorize
until the test lets it go.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from clients.merchant.records import OrderState
from clients.wallet import purchases
from clients.wallet.purchases import PurchaseRecord
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.merchant.outage_support import held_gateway
from tests.clients.test_purchase_flow import buy, offer

# The merchant's threads, of which one may wait on the gateway (``gateway_waits``).
THREADS = 2
# The wallets' patience here: a Purchase that waits on the gateway holds its thread until
# a second before it. Long enough to tell "at once" from "until the deadline".
WALLET_SECONDS = 12.0
# Bounds the joins; every purchase here ends within WALLET_SECONDS.
WAIT_SECONDS = 60.0
RECEIVED = purchase_pb2.CompletionCode.Name(purchase_pb2.COMPLETION_CODE_ORDER_RECEIVED)


def test_a_purchase_past_the_gateway_waits_is_received_and_an_inquiry_finds_a_thread(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(purchases, "PURCHASE_DEADLINE_SECONDS", WALLET_SECONDS)
    with held_gateway(bank, tmp_path / "m", "m-waits", threads=THREADS) as (merchant, held):
        target = f"127.0.0.1:{merchant.port}"
        waiting, other = (
            new_wallet(bank, tmp_path / "wa", target),
            new_wallet(bank, tmp_path / "wb", target),
        )
        try:
            first: dict[str, PurchaseRecord] = {}
            buying = threading.Thread(
                target=lambda: first.update(record=buy(waiting, offer(merchant, 300)))
            )
            buying.start()
            held.wait_entered(1)  # the first Purchase waits on the gateway, a thread held
            started = time.monotonic()
            record = buy(other, offer(merchant, 400))
            took = time.monotonic() - started
            assert record.completion == RECEIVED
            assert took < WALLET_SECONDS / 2, f"the second Purchase took {took:.1f} s"
            # Both threads were the Purchases' before: an Inquiry now would have waited.
            asked = other.shopper(WALLET_PASSPHRASE).inquire(
                other.config.require_merchant(), record.short_id
            )
            assert asked.completion == RECEIVED
            held.release.set()
            buying.join(WAIT_SECONDS)
            assert first["record"].completion != RECEIVED  # it waited, and was authorized
            # The one answered at once is authorized by the worker.
            xid = bytes.fromhex(record.xid)
            give_up = time.monotonic() + WAIT_SECONDS
            while merchant.store.order(xid).state is not OrderState.AUTHORIZED:
                assert time.monotonic() < give_up, merchant.store.order(xid).state
                time.sleep(0.1)
        finally:
            held.release.set()
            waiting.close()
            other.close()
