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
    status, _, err = merchant_cli("reverse", "--credit", credit.rrpid.hex()[:8])
    assert status == 1 and "already reversed" in err
    assert settled_amounts(merchant.store, xid) == (10_000, 0)
    status, out, _ = merchant_cli("orders")
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith(record.xid[:8]))
    assert "authorized" in line and "captured     10000" in line

    # The cardholder sees it too.
    seen = wallet.shopper(WALLET_PASSPHRASE).inquire(
        wallet.config.require_merchant(), record.xid[:8]
    )
    assert seen.completion == "COMPLETION_CODE_CAPTURE_PERFORMED"
    assert (seen.captured, seen.credited) == (10_000, 0)

    batch = _batch_of(merchant, xid)
    status, out, _ = merchant_cli("batch", "query", "--batch", batch, "--details", "20")
    assert status == 0 and f"batch {batch}: SUCCESS;" in out
    assert f"batch {batch}: agrees with the merchant's operations" in out
    # Detail lines: sequence number, kind, XID start, amount.
    listed = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert [kind for _, kind, _, _ in listed].count("capture") == 3
    assert {xid_prefix for _, _, xid_prefix, _ in listed} == {record.xid[:8]}
    status, out, _ = merchant_cli("batch", "close", "--batch", batch)
    assert status == 0 and f"batch {batch}: SUCCESS closed" in out
    assert (batch, True) in [(b, closed) for b, _, closed in merchant.store.batches()]


def test_capture_reversal_names_the_capture_it_undoes(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A capture reversal undoes one capture, named by its request's RRPID (the ledger
    reverses exactly that posting)."""
    merchant = make_merchant("m-cap-rev")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 6_000))
    xid = bytes.fromhex(record.xid)
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    for amount in ("4000", "2000"):
        assert run_cli([*base, "capture", record.xid[:12], "--amount", amount], capsys)[0] == 0
    second = [o for o in merchant.store.operations(xid) if o.kind is OperationKind.CAPTURE][1]
    status, out, err = run_cli([*base, "reverse", "--capture", second.rrpid.hex()[:8]], capsys)
    assert (status, err) == (0, "")
    assert "capture-reversal" in out and "succeeded, 2000" in out
    assert settled_amounts(merchant.store, xid) == (4_000, 0)
    status, _, err = run_cli([*base, "reverse", "--capture", second.rrpid.hex()[:8]], capsys)
    assert status == 1 and "already reversed" in err


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
    # Nothing authorized any more: the order will not be fulfilled.
    assert seen.completion == purchase_pb2.CompletionCode.Name(
        purchase_pb2.COMPLETION_CODE_ORDER_REJECTED
    )
    assert seen.auth_amount == 0


def test_a_capture_reversal_gives_money_back_not_authorization(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway counts captures against the authorization gross: the merchant refuses,
    before sending, a capture or a release that a reversed capture would not make room
    for, instead of recording the gateway's refusal."""
    merchant = make_merchant("m-cap-rev-gross")
    record = buy(make_wallet(merchant), offer(merchant, 6_000))
    xid = bytes.fromhex(record.xid)
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    assert run_cli([*base, "capture", record.xid[:12], "--amount", "4000"], capsys)[0] == 0
    (capture,) = merchant.store.operations(xid)
    assert run_cli([*base, "reverse", "--capture", capture.rrpid.hex()[:8]], capsys)[0] == 0
    assert settled_amounts(merchant.store, xid) == (0, 0)
    sent = len(merchant.store.operations(xid))

    status, _, err = run_cli([*base, "capture", record.xid[:12], "--amount", "3000"], capsys)
    assert status == 1 and "cannot be captured (2000 left" in err
    status, _, err = run_cli([*base, "reverse", record.xid[:12]], capsys)
    assert status == 1 and "keep must be at least the 4000 captured" in err
    assert len(merchant.store.operations(xid)) == sent  # nothing was sent

    status, out, _ = run_cli([*base, "reverse", record.xid[:12], "--keep", "5000"], capsys)
    assert status == 0 and "auth-reversal" in out and "succeeded, 5000" in out
    status, out, _ = run_cli([*base, "capture", record.xid[:12]], capsys)
    assert status == 0 and "succeeded, 1000" in out
    assert not any(o.state.value == "failed" for o in merchant.store.operations(xid))
