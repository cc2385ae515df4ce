"""Capture, refund and reversals through the merchant's CLI, against the real gateway."""

from __future__ import annotations

import pytest

from clients.merchant.checkout import settled_amounts
from clients.merchant.records import OperationKind, OrderState
from clients.merchant.runtime import Merchant
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer


def test_capture_full_partial_several_refund_and_reversals(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    merchant = make_merchant("m-settle")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 10_000))
    xid = bytes.fromhex(record.xid)
    base = ["merchant", "--dir", str(merchant.config.base_dir)]

    def merchant_cli(*argv: str) -> tuple[int, str, str]:
        return run_cli([*base, *argv], capsys)

    status, out, err = merchant_cli("capture", record.xid[:12], "--amount", "3000")
    assert (status, err) == (0, "")
    assert "capture" in out and "succeeded, 3000" in out
    status, out, _ = merchant_cli("capture", record.xid[:12], "--amount", "2000")
    assert status == 0 and "succeeded, 2000" in out
    # Never more than is authorized and not yet captured: refused before anything is sent.
    status, _, err = merchant_cli("capture", record.xid[:12], "--amount", "6000")
    assert status == 1 and "cannot be captured (5000 left" in err
    status, out, _ = merchant_cli("capture", record.xid[:12])
    assert status == 0 and "succeeded, 5000" in out
    assert settled_amounts(merchant.store, xid) == (10_000, 0)

    status, out, _ = merchant_cli("refund", record.xid[:12], "--amount", "2500")
    assert status == 0 and "credit" in out and "succeeded, 2500" in out
    status, _, err = merchant_cli("refund", record.xid[:12], "--amount", "8000")
    assert status == 1 and "cannot be refunded (7500 captured" in err
    credit = next(o for o in merchant.store.operations(xid) if o.kind is OperationKind.CREDIT)
    status, out, _ = merchant_cli("reverse", "--credit", credit.rrpid.hex()[:8])
    assert status == 0 and "credit-reversal" in out and "succeeded, 2500" in out
    assert settled_amounts(merchant.store, xid) == (10_000, 0)
    second = [o for o in merchant.store.operations(xid) if o.kind is OperationKind.CAPTURE][1]
    status, out, _ = merchant_cli("reverse", "--capture", second.rrpid.hex()[:8])
    assert status == 0 and "capture-reversal" in out and "succeeded, 2000" in out
    assert settled_amounts(merchant.store, xid) == (8_000, 0)

    status, out, _ = merchant_cli("orders")
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith(record.xid[:8]))
    assert "authorized" in line and "captured      8000" in line

    # The cardholder sees it too.
    seen = wallet.shopper(WALLET_PASSPHRASE).inquire(
        wallet.config.require_merchant(), record.xid[:8]
    )
    assert seen.completion == "COMPLETION_CODE_CAPTURE_PERFORMED"
    assert (seen.captured, seen.credited) == (8_000, 0)

    status, out, _ = merchant_cli("batch", "query", "--batch", _batch_of(merchant, xid))
    assert status == 0 and "captured" in out


def _batch_of(merchant: Merchant, xid: bytes) -> str:
    return next(o.batch_id for o in merchant.store.operations(xid) if o.batch_id)


def test_authorization_reversal_partial_then_full(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    merchant = make_merchant("m-reverse")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 5_000))
    xid = bytes.fromhex(record.xid)
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    status, out, _ = run_cli([*base, "reverse", record.xid[:12], "--keep", "4000"], capsys)
    assert status == 0 and "auth-reversal" in out and "succeeded, 4000" in out
    order = merchant.store.order(xid)
    assert order.state is OrderState.AUTHORIZED
    assert order.authorization is not None and order.authorization.amount.minor == 4000
    status, _, err = run_cli([*base, "capture", record.xid[:12], "--amount", "4500"], capsys)
    assert status == 1 and "4000 left" in err
    status, out, _ = run_cli([*base, "reverse", record.xid[:12]], capsys)
    assert status == 0 and "succeeded, 0" in out
    assert merchant.store.order(xid).state is OrderState.REVERSED
    status, _, err = run_cli([*base, "capture", record.xid[:12]], capsys)
    assert status == 1 and "not authorized" in err
    seen = wallet.shopper(WALLET_PASSPHRASE).inquire(
        wallet.config.require_merchant(), record.xid[:8]
    )
    assert seen.completion == purchase_pb2.CompletionCode.Name(
        purchase_pb2.COMPLETION_CODE_AUTHORIZATION_PERFORMED
    )
    assert seen.auth_amount == 0
