"""An order whose AuthReq cannot be built (``SignerGone``) ends failed only while it is
purchased, nothing stored for it: one that another process on the same file moved to
authorizing meanwhile (its AuthReq stored, perhaps sent, the gateway perhaps holding
money for it) is never failed by that path, nor its offer opened again. Against the real
bank.

Before: ``_stored`` ended it through ``record_failure``, which takes an authorizing order
too, and the offer could then be paid a second time."""

from __future__ import annotations

import logging
import os

import pytest

from clients.errors import SignerGone
from clients.merchant.config import AnswerMode
from clients.merchant.order_store import OfferTaken
from clients.merchant.records import Order, OrderState
from clients.merchant.store import MerchantStore
from setcore.authorization import AuthRequestState
from setcore.errors import ErrorCode
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

PRICE = 500


def test_an_order_another_process_is_authorizing_is_not_failed_as_unsent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-unsent-race", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)  # the test authorizes; no worker races it
    initiation = offer(merchant, PRICE)
    xid = bytes.fromhex(buy(make_wallet(merchant), initiation).xid)
    assert merchant.store.order(xid).state is OrderState.PURCHASED
    other = MerchantStore(merchant.config.store)  # another process on the same file
    rrpid = os.urandom(32)

    def stored_elsewhere_then_gone(order: Order) -> tuple[bytes, AuthRequestState]:
        """The other process stores its AuthReq while this one finds its signer gone."""
        other.record_auth_request(order.xid, rrpid, b"request", b"digest")
        raise SignerGone(f"order {order.short_id} cannot be authorized: its signer is gone")

    monkeypatch.setattr(merchant.authorizer, "_build", stored_elsewhere_then_gone)
    try:
        with caplog.at_level(logging.ERROR, logger="setpay.merchant"):
            left = merchant.authorizer._stored(merchant.store.order(xid))
    finally:
        other.close()
    # The other process's AuthReq goes on: not failed, not said to be.
    assert left == merchant.store.order(xid)
    assert not [r for r in caplog.records if "failed, nothing sent" in r.getMessage()]
    order = merchant.store.order(xid)
    assert (order.state, order.auth_rrpid, order.error_code) == (
        OrderState.AUTHORIZING, rrpid, 0,
    )  # fmt: skip
    # Still being paid for: the offer is not offered again.
    with pytest.raises(OfferTaken, match="is already paid and being authorized"):
        merchant.store.open_order(initiation.lid_m, os.urandom(32), b"t", os.urandom(32))
    assert merchant.store.offer(initiation.lid_m).xid == xid


def test_an_order_another_process_failed_first_is_returned_and_the_round_goes_on(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both processes find the signer gone and the other fails the order first: this one
    takes the failed order as it is rather than raising, so a resume round goes on to the
    next order (before, it stopped on OrderStateError, as a Purchase's ``authorize``
    did)."""
    merchant = make_merchant("m-unsent-first", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)
    wallet = make_wallet(merchant)
    first = bytes.fromhex(buy(wallet, offer(merchant, PRICE)).xid)
    second = bytes.fromhex(buy(wallet, offer(merchant, PRICE)).xid)
    other = MerchantStore(merchant.config.store)
    built: list[bytes] = []

    def failed_elsewhere_then_gone(order: Order) -> tuple[bytes, AuthRequestState]:
        built.append(order.xid)
        if order.xid == first:
            other.fail_unsent(order.xid, ErrorCode.ERROR_CODE_INVALID_CERTIFICATE)
        raise SignerGone(f"order {order.short_id} cannot be authorized: its signer is gone")

    monkeypatch.setattr(merchant.authorizer, "_build", failed_elsewhere_then_gone)
    try:
        merchant.authorizer.resume()
    finally:
        other.close()
    assert built == [first, second]
    assert {merchant.store.order(x).state for x in built} == {OrderState.FAILED}
