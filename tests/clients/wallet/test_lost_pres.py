"""A purchase whose PRes never comes back is still the wallet's: recorded, and asked about."""

from __future__ import annotations

from typing import TypeVar

import pytest
from google.protobuf.message import Message

from cli.wallet import record_line
from clients.errors import PurchaseOutcomeUnknown, TransportError
from clients.transport import Caller
from clients.wallet import purchases
from clients.wallet.purchases import SENT, PurchaseBook
from clients.wallet.runtime import Wallet
from setcore.errors import ErrorCode, PeerError
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

PURCHASE = "/Purchase"
M = TypeVar("M", bound=Message)


class AnswerLost(Caller):
    """The merchant gets the PReq and answers; the answer is lost on the way back."""

    def call(self, method: str, request: bytes, cls: type[M], *, deadline: float) -> M:
        response = super().call(method, request, cls, deadline=deadline)
        if method.endswith(PURCHASE):
            raise TransportError("merchant Purchase", "DEADLINE_EXCEEDED")
        return response


class RequestLost(Caller):
    """The PReq never reaches the merchant."""

    def call(self, method: str, request: bytes, cls: type[M], *, deadline: float) -> M:
        if method.endswith(PURCHASE):
            raise TransportError("merchant Purchase", "UNAVAILABLE")
        return super().call(method, request, cls, deadline=deadline)


def _book(wallet: Wallet) -> PurchaseBook:
    return PurchaseBook(wallet.config.purchases_file)


def test_a_lost_pres_leaves_a_purchase_inquire_finds(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-lost-pres")
    wallet = make_wallet(merchant)
    initiation = offer(merchant, 900)
    monkeypatch.setattr(purchases, "Caller", AnswerLost)
    with pytest.raises(PurchaseOutcomeUnknown) as caught:
        buy(wallet, initiation)
    monkeypatch.setattr(purchases, "Caller", Caller)

    (sent,) = _book(wallet).all()
    assert sent.completion == SENT and not sent.answered
    assert sent.amount == 900 and sent.currency == initiation.currency
    # The error names the purchase and how to learn what became of it.
    assert isinstance(caught.value.cause, TransportError)
    assert caught.value.cause.status == "DEADLINE_EXCEEDED"
    assert f"setpay wallet inquire {sent.short_id}" in str(caught.value)
    assert record_line(sent).startswith(f"{sent.short_id}  SENT")

    record = wallet.shopper(WALLET_PASSPHRASE).inquire(
        wallet.config.require_merchant(), sent.short_id
    )
    assert record.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    assert record.auth_code == "AUTH_CODE_APPROVED" and record.auth_amount == 900
    assert _book(wallet).find(sent.short_id) == record


def test_a_preq_that_never_arrived_stays_recorded_and_can_be_bought_again(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-lost-preq")
    wallet = make_wallet(merchant)
    initiation = offer(merchant, 450)
    monkeypatch.setattr(purchases, "Caller", RequestLost)
    with pytest.raises(PurchaseOutcomeUnknown):
        buy(wallet, initiation)
    monkeypatch.setattr(purchases, "Caller", Caller)
    (sent,) = _book(wallet).all()
    assert sent.completion == SENT

    # The merchant never saw the purchase and says so; the wallet's record is kept.
    with pytest.raises(PeerError) as caught:
        wallet.shopper(WALLET_PASSPHRASE).inquire(wallet.config.require_merchant(), sent.xid)
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_XID
    assert _book(wallet).find(sent.xid).completion == SENT

    # Nothing was held: the same order can be bought, under a new XID.
    record = buy(wallet, initiation)
    assert record.xid != sent.xid and record.auth_code == "AUTH_CODE_APPROVED"
    assert {r.xid for r in _book(wallet).all()} == {sent.xid, record.xid}


def test_a_verified_pres_replaces_the_sent_state(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-pres")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 1200))
    assert record.answered
    assert _book(wallet).all() == [record]
