"""A purchase's PRes replaces an earlier answer an inquiry recorded meanwhile: the
merchant, waiting on the gateway, answered another command's inquiry ORDER_RECEIVED,
then the PRes AUTHORIZATION_PERFORMED; the book kept ORDER_RECEIVED and the purchase
printed it (``merchant_answers.given_after``). Real bank, merchant and wallet."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from clients.transport import Caller
from clients.wallet import purchases
from clients.wallet.purchases import PurchaseBook
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

AMOUNT = 1234
# Bounds every wait of the test's threads on each other.
WAIT_SECONDS = 10.0
RECEIVED = "COMPLETION_CODE_ORDER_RECEIVED"
AUTHORIZED = "COMPLETION_CODE_AUTHORIZATION_PERFORMED"


def test_a_pres_replaces_the_order_received_an_inquiry_recorded_meanwhile(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-pres-after-inquiry")
    wallet = make_wallet(merchant)
    book = PurchaseBook(wallet.config.purchases_file)
    authorizing, gateway_may_answer = threading.Event(), threading.Event()
    authorize = merchant.authorizer.authorize

    def slow_gateway(*args: Any, **kwargs: Any) -> Any:
        authorizing.set()
        gateway_may_answer.wait(WAIT_SECONDS)
        return authorize(*args, **kwargs)

    monkeypatch.setattr(merchant.authorizer, "authorize", slow_gateway)
    seen: dict[str, str] = {}

    class InquiryWhileAuthorizing(Caller):
        """The PReq sent; while the merchant waits on the gateway, another wallet command
        asks about the purchase and records the answer; then the gateway answers."""

        def call(self, method: str, request: Any, cls: Any, *, deadline: float) -> Any:
            if not method.endswith("/Purchase"):
                return super().call(method, request, cls, deadline=deadline)
            answered: list[Any] = []
            send = super().call
            sender = threading.Thread(
                target=lambda: answered.append(send(method, request, cls, deadline=deadline))
            )
            sender.start()
            try:
                assert authorizing.wait(WAIT_SECONDS)
                (sent,) = book.all()
                other = wallet.shopper(WALLET_PASSPHRASE)
                inquired = other.inquire(wallet.config.require_merchant(), sent.xid)
                seen["inquiry"] = inquired.completion
            finally:
                gateway_may_answer.set()
                sender.join(WAIT_SECONDS)
            return answered[0]

    monkeypatch.setattr(purchases, "Caller", InquiryWhileAuthorizing)
    record = buy(wallet, offer(merchant, AMOUNT))
    assert seen == {"inquiry": RECEIVED}
    assert (record.completion, record.auth_code, record.auth_amount) == (
        AUTHORIZED, "AUTH_CODE_APPROVED", AMOUNT,
    )  # fmt: skip
    assert book.find(record.xid) == record
