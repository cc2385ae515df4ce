"""Purchase end to end: wallet -> merchant -> gateway, in both answer modes, for real."""

from __future__ import annotations

import time

import pytest

from clients.merchant.config import AnswerMode
from clients.merchant.records import Money, OrderState
from clients.merchant.runtime import Merchant
from clients.wallet.purchases import Initiation, PurchaseRecord
from clients.wallet.runtime import Wallet
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import new_id
from setpay.v1 import authorization_pb2, crypto_pb2
from tests.clients.bank_support import CREDIT_LIMIT, EUR, WALLET_PASSPHRASE
from tests.clients.conftest import MerchantFactory, WalletFactory

# Bounds the wait for the background authorization; it normally takes milliseconds.
ASYNC_WAIT_SECONDS = 20.0


def offer(merchant: Merchant, amount: int, description: bytes = b"two books") -> Initiation:
    """The merchant creates an order (SET Initiation) the wallet then pays. Its LID-M is
    drawn again when all digits: tests type it as ``--lid-m``, which refuses one that
    could be a card number (``cli.order_options.lid_m_hex``: 1 draw in ~18,000)."""
    lid_m = new_id()[:8]
    while lid_m.hex().isdigit():
        lid_m = new_id()[:8]
    merchant.store.add_offer(lid_m, description, Money(EUR, amount), "setpay")
    return Initiation(lid_m, description, EUR, amount)


def buy(wallet: Wallet, initiation: Initiation) -> PurchaseRecord:
    return wallet.shopper(WALLET_PASSPHRASE).purchase(wallet.config.require_merchant(), initiation)


def test_purchase_after_authorization(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-sync", AnswerMode.AFTER_AUTHORIZATION)
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 2599))
    assert record.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    assert record.auth_code == "AUTH_CODE_APPROVED"
    assert record.auth_amount == 2599
    order = merchant.store.order(bytes.fromhex(record.xid))
    assert order.state is OrderState.AUTHORIZED
    assert order.authorization is not None and order.authorization.cap_token
    # The PI went to the gateway byte for byte, as the AuthReq's baggage.
    assert order.auth_request is not None and order.pi is not None
    sent = authorization_pb2.AuthorizeRequest.FromString(order.auth_request)
    assert crypto_pb2.SealedWithBaggage.FromString(sent.auth_req).baggage == order.pi


def test_order_received_then_inquiry_reports_authorization(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-async", AnswerMode.ORDER_RECEIVED)
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 1500))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    shopper = wallet.shopper(WALLET_PASSPHRASE)
    give_up = time.monotonic() + ASYNC_WAIT_SECONDS
    while True:
        record = shopper.inquire(wallet.config.require_merchant(), record.xid[:8])
        if record.completion != "COMPLETION_CODE_ORDER_RECEIVED" or time.monotonic() > give_up:
            break
        time.sleep(0.05)
    assert record.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    assert record.auth_code == "AUTH_CODE_APPROVED"
    assert record.auth_amount == 1500
    order = merchant.store.order(bytes.fromhex(record.xid))
    assert order.authorization is not None and order.authorization.approval_code


def test_decline_is_a_normal_answer(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-decline")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, CREDIT_LIMIT + 1))
    assert record.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    assert record.auth_code == "AUTH_CODE_DECLINED"
    assert merchant.store.order(bytes.fromhex(record.xid)).state is OrderState.DECLINED


def test_unknown_order_is_refused_with_a_signed_error(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-unknown")
    wallet = make_wallet(merchant)
    with pytest.raises(PeerError) as caught:
        buy(wallet, Initiation(b"no-such-order", b"x", EUR, 100))
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def test_order_disagreement_is_refused(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """The wallet pays another amount than the merchant's order: HOD differs."""
    merchant = make_merchant("m-hod")
    wallet = make_wallet(merchant)
    agreed = offer(merchant, 1000)
    with pytest.raises(PeerError) as caught:
        buy(wallet, Initiation(agreed.lid_m, agreed.description, EUR, 999))
    assert caught.value.code == ErrorCode.ERROR_CODE_DIGEST_MISMATCH


def test_paid_order_is_not_offered_again(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-twice")
    wallet = make_wallet(merchant)
    initiation = offer(merchant, 700)
    buy(wallet, initiation)
    with pytest.raises(PeerError) as caught:
        buy(wallet, initiation)
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
