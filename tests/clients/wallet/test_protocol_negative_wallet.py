"""The wallet's own check before a PReq leaves: one over the largest message a peer takes
(``clients.transport.MAX_MESSAGE_BYTES``) is refused, MESSAGE_TOO_BIG, before the
purchase is recorded as sent: gRPC would refuse to send it afterwards, and the book would
hold a purchase the merchant never saw."""

from __future__ import annotations

import pytest

from clients.merchant.records import OrderState
from clients.transport import MAX_MESSAGE_BYTES
from clients.wallet.purchases import PurchaseBook
from setcore.errors import ErrorCode, ProtocolError
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import offer


def test_a_preq_over_the_largest_message_is_refused_before_it_is_recorded(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-neg-preq-size")
    wallet = make_wallet(merchant)
    initiation = offer(merchant, 300)

    def oversize(preq: purchase_pb2.PurchaseRequest) -> None:
        preq.header.sw_ident = "x" * MAX_MESSAGE_BYTES

    with pytest.raises(ProtocolError) as caught:
        wallet.shopper(WALLET_PASSPHRASE).purchase(
            wallet.config.require_merchant(), initiation, unsafe_rewrite=oversize
        )
    assert caught.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG
    assert caught.value.reason.startswith("the PReq would be ")
    assert PurchaseBook(wallet.config.purchases_file).all() == []
    # The merchant offered the order and was never sent a PReq for it.
    assert [order.state for order in merchant.store.orders()] == [OrderState.INITIATED]
