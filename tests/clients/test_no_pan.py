"""After a whole run, no card number in any merchant file, any log line, or the wallet's files."""

from __future__ import annotations

import logging

import pytest

from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.pan_scan import files_with_pans, lines_with_pans
from tests.clients.test_purchase_flow import buy, offer


def test_no_pan_in_merchant_files_or_logs(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    merchant = make_merchant("m-no-pan")
    wallet = make_wallet(merchant)  # registration: the PAN goes to the CA, sealed
    record = buy(wallet, offer(merchant, 4_200))
    assert record.auth_code == "AUTH_CODE_APPROVED"
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    assert run_cli([*base, "capture", record.xid[:12]], capsys)[0] == 0
    assert run_cli([*base, "refund", record.xid[:12], "--amount", "200"], capsys)[0] == 0
    status, out, err = run_cli([*base, "orders"], capsys)
    assert status == 0
    wallet.shopper(WALLET_PASSPHRASE).inquire(wallet.config.require_merchant(), record.xid[:8])

    lines = [r.getMessage() for r in caplog.records] + [
        r.exc_text for r in caplog.records if r.exc_text
    ]
    assert len(lines) > 20, "the run should have told its story in the log"
    assert any("PRes" in line for line in lines) and any("CapReq" in line for line in lines)
    assert lines_with_pans(lines) == []
    assert lines_with_pans([out, err]) == []
    # Every file the merchant has: configuration, database (and its WAL), keys, certificates.
    merchant_files = files_with_pans(merchant.config.base_dir)
    assert merchant_files == {}
    assert any(merchant.config.base_dir.glob("merchant.db*"))
    # The wallet keeps its card only sealed.
    assert files_with_pans(wallet.config.base_dir) == {}
