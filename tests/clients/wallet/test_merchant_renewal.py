"""A purchase made before ``setpay merchant renew`` can still be asked about: the wallet
records the merchant's ID and brand, and takes an InqRes signed with the renewed
certificate for the merchant's word (``setcore.purchase_answer.merchant_signer``)."""

from __future__ import annotations

from pathlib import Path

from clients.merchant.config import AnswerMode
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import restart
from tests.clients.test_purchase_flow import buy, offer

from .conftest import Setpay

MERCHANT_ID = "m-renewed-since"


def test_a_purchase_made_before_the_merchant_renewed_can_be_asked_about(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    tmp_path: Path,
    setpay: Setpay,
) -> None:
    merchant = make_merchant(MERCHANT_ID, AnswerMode.AFTER_AUTHORIZATION)
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 1200))
    assert record.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    signed_with = merchant.credentials.signature_thumb
    merchant.close()
    status, _, err = setpay(["merchant", "--dir", str(tmp_path / MERCHANT_ID), "renew"])
    assert (status, err) == (0, "")
    renewed = restart(tmp_path / MERCHANT_ID)
    try:
        assert renewed.credentials.signature_thumb != signed_with
        status, out, err = setpay(
            ["wallet", "--dir", str(wallet.config.base_dir), "inquire", record.short_id,
             "--merchant", f"127.0.0.1:{renewed.port}"]
        )  # fmt: skip
        assert (status, err) == (0, "")
        assert out.startswith(f"{record.short_id}  AUTHORIZATION_PERFORMED  APPROVED  amount 1200")
        # Pinned by who the merchant is, not by the certificate it signed the PInitRes with.
        pinned = (record.merchant_brand, record.merchant_id)
        assert pinned == (wallet.config.brand_id, MERCHANT_ID)
    finally:
        renewed.close()
