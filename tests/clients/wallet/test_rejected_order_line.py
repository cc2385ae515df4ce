"""``setpay wallet inquire`` about an order the merchant no longer stands by (its whole
authorization reversed): SET's InqRes says ORDER_REJECTED with no AuthCode and no reason,
and the wallet says that, not "UNSPECIFIED", which read like the reason. And an inquiry
that finds no merchant names the address it tried and where that came from."""

from __future__ import annotations

from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

from .conftest import Setpay


def test_inquire_after_the_whole_authorization_was_reversed(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, setpay: Setpay
) -> None:
    merchant = make_merchant("m-rejects")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 4_250))
    status, _, _ = setpay(
        ["merchant", "--dir", str(merchant.config.base_dir), "reverse", record.xid[:12]]
    )
    assert status == 0
    status, out, err = setpay(["wallet", "--dir", str(wallet.config.base_dir), "inquire",
                               record.short_id])  # fmt: skip
    assert (status, err) == (0, "")
    assert out == (
        f"{record.short_id}  ORDER_REJECTED  -  amount 4250 (978) authorized 0 captured 0 "
        "refunded 0: the merchant rejected the order and gave no reason (SET's answer has no "
        "room for one): ask the merchant why\n"
    )


def test_inquire_of_a_merchant_gone_names_the_address_the_purchase_was_made_at(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, setpay: Setpay
) -> None:
    """Without --merchant, inquire asks where the purchase was made (purchases.json), not
    merchant.target: its failure says so, and how to ask elsewhere."""
    merchant = make_merchant("m-gone-after")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 1_000))
    merchant.close()
    status, out, err = setpay(["wallet", "--dir", str(wallet.config.base_dir), "inquire",
                               record.short_id])  # fmt: skip
    assert (status, out) == (1, "")
    assert err == (
        f"setpay wallet: merchant Inquiry: UNAVAILABLE at {record.merchant_target} "
        "(merchant_target in purchases.json (--merchant names another)): is the merchant "
        "running, and reachable there?\n"
    )
