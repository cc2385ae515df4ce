"""Merchant and wallet with their keys on SoftHSM tokens (PKCS#11), in both profiles."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from clients.merchant.config import AnswerMode
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import OperationState
from clients.merchant.runtime import Merchant
from setcore.profiles import PROFILES
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    new_wallet,
    register_merchant,
)
from tests.clients.test_purchase_flow import buy, offer
from tests.hsm.testbed import SOFTHSM_MODULE, session_softhsm

# Listing a token's objects is quick; this only bounds a hang.
PKCS11_TOOL_SECONDS = 60


@pytest.mark.integration
@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_purchase_and_capture_with_keys_on_tokens(
    bank: RunningBank,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    profile_name: str,
) -> None:
    profile = PROFILES[profile_name]
    softhsm = session_softhsm(tmp_path_factory)
    merchant_token, wallet_token = softhsm.init_token(), softhsm.init_token()
    directory = tmp_path / "merchant"
    merchant_id = f"m-token-{profile_name}"
    configure_merchant(
        bank, directory, merchant_id, AnswerMode.AFTER_AUTHORIZATION, keys=merchant_token.uri()
    )
    register_merchant(directory, profile)
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        merchant.serve()
        wallet = new_wallet(
            bank, tmp_path / "wallet", f"127.0.0.1:{merchant.port}", keys=wallet_token.uri(),
            profile=profile,
        )  # fmt: skip
        try:
            record = buy(wallet, offer(merchant, 1_999))
        finally:
            wallet.close()
        assert record.auth_code == "AUTH_CODE_APPROVED"
        # The CapRes is sealed to the merchant's key-exchange key: opened on the token.
        capture = merchant.settlement.capture(bytes.fromhex(record.xid))
        assert capture.state is OperationState.SUCCEEDED and capture.result_amount == 1_999
    finally:
        merchant.close()
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.fail("pkcs11-tool is not installed: apt-get install opensc")
    listing = subprocess.run(
        [tool, "--module", SOFTHSM_MODULE, "--token-label", merchant_token.label,
         "--login", "--pin", merchant_token.pin, "--list-objects"],
        capture_output=True, text=True, check=True, timeout=PKCS11_TOOL_SECONDS,
    ).stdout  # fmt: skip
    assert "merchant-sig" in listing and "merchant-kex" in listing
