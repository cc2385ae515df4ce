"""A purchase's PRes is saved over the SENT record only: an inquiry run by another command
while the PRes was on its way may have recorded what the merchant did after it (a
capture), and the older AUTHORIZED answer replaced that (``PurchaseBook``
``save_unless_changed``). Real bank, merchant and wallet."""

from __future__ import annotations

from typing import Any

import pytest

from clients.transport import Caller
from clients.wallet import purchases
from clients.wallet.purchases import PurchaseBook
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

CAPTURED = 700


def test_a_pres_keeps_the_capture_an_inquiry_recorded_meanwhile(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-pres-inquiry")
    wallet = make_wallet(merchant)
    book = PurchaseBook(wallet.config.purchases_file)
    seen: dict[str, object] = {}

    class InquiryMeanwhile(Caller):
        """The Purchase call's answer held back while the merchant captures and another
        wallet command's inquiry records it."""

        def call(self, method: str, request: Any, cls: Any, *, deadline: float) -> Any:
            response = super().call(method, request, cls, deadline=deadline)
            if method.endswith("/Purchase") and not seen:
                monkeypatch.setattr(purchases, "Caller", Caller)
                (sent,) = book.all()
                merchant.settlement.capture(bytes.fromhex(sent.xid))
                other = wallet.shopper(WALLET_PASSPHRASE)
                got = other.inquire(wallet.config.require_merchant(), sent.xid)
                seen["inquiry"] = got.captured
            return response

    monkeypatch.setattr(purchases, "Caller", InquiryMeanwhile)
    record = buy(wallet, offer(merchant, CAPTURED))
    assert seen == {"inquiry": CAPTURED}
    assert book.find(record.xid).captured == CAPTURED
    assert record.captured == CAPTURED  # what the book holds, not the older answer
