"""The wallet ``setpay demo --dir D`` leaves names the demo's merchant, as the README's
wallet names its own: ``setpay wallet purchase`` and ``inquire`` refuse a wallet without a
``[merchant]`` table, ``--merchant`` included, so without it the pair the README calls
working could not buy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from clients.merchant.config import load as load_merchant_config
from clients.wallet.config import load as load_wallet_config


def test_the_demo_wallet_names_the_demo_merchant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--json"]) == 0
    events = json.dumps(json.loads(capsys.readouterr().out)["events"])
    wallet_dir, merchant_dir = tmp_path / "demo" / "wallet", tmp_path / "demo" / "merchant"
    wallet = load_wallet_config(wallet_dir, env={})
    assert wallet.merchant is not None, "the demo's wallet has no [merchant] table"
    host, _, port = wallet.merchant.target.rpartition(":")
    # The port the demo's merchant served on, which its story told.
    assert host == "127.0.0.1" and f"serving wallets on port {port} " in events
    # The merchant's server certificate is trusted through the bank's transport root, the
    # one the wallet holds, as its CA's is.
    assert wallet.merchant.tls_ca == wallet_dir.resolve() / "tls" / "root.pem"
    assert wallet.ca is not None and wallet.ca.tls_ca == wallet.merchant.tls_ca
    merchant = load_merchant_config(merchant_dir, env={})
    assert merchant.gateway.tls_ca is not None
    assert wallet.merchant.tls_ca.read_bytes() == merchant.gateway.tls_ca.read_bytes()
