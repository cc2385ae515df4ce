"""An offer takes at most ``MAX_ORDERS_PER_OFFER`` orders: declined or failed that often,
its next PInit is refused (UNKNOWN_LID to the wallet, the merchant's reason logged) and
nothing is opened, so one offer is not a way to have the gateway decide card after card
(``order_store.open_order``). In the store, and against the real gateway as a wallet buys.

Before: nothing bounded it; one card declined 25 times against one offer made 25 AuthReqs
the gateway decided."""

from __future__ import annotations

import logging
import re

import pytest

from clients.merchant.order_store import MAX_ORDERS_PER_OFFER, OfferUsedUp
from clients.merchant.records import Authorization, OrderState
from clients.merchant.store import MerchantStore
from setcore.errors import ErrorCode, PeerError
from setpay.v1 import authorization_pb2
from tests.clients.bank_support import CREDIT_LIMIT
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.store_support import EUR
from tests.clients.test_purchase_flow import buy, offer

DECLINED = authorization_pb2.AUTH_CODE_DECLINED
# A SET ErrorCode the gateway refused an AuthReq with (any will do: the store keeps it).
REFUSED_WITH = 16
# What is left of the card's credit once it holds most of it: less than the offer.
LEFT = 100
PRICE = 500
USED_UP = (
    f"was declined or failed {MAX_ORDERS_PER_OFFER} times; add a new offer"
    " (`setpay merchant orders new`)"
)


def _ended(store: MerchantStore, lid: bytes, number: int) -> bytes:
    """The offer's next order, paid for and ended: declined, or (every third) failed by
    the gateway's SET Error. Its XID."""
    xid = lid.ljust(8, b".") + number.to_bytes(4, "big") + b"x" * 20
    store.open_order(lid, xid, b"trans-ids", b"c" * 32)
    store.record_purchase(xid, b"u" * 32, b"oi-data", b"sealed-pi")
    store.record_auth_request(xid, b"r" + xid[1:], b"request", b"digest")
    if number % 3 == 2:
        store.record_failure(xid, REFUSED_WITH)
    else:
        declined = Authorization(DECLINED, EUR, "", b"auth-res", b"")
        store.record_authorization(xid, declined, approved=False)
    return xid


def _offer_with_ended(store: MerchantStore, lid: bytes, ended: int) -> list[bytes]:
    """An offer whose first ``ended`` orders ended unpaid: their XIDs."""
    store.add_offer(lid, b"two books", EUR, "setpay")
    return [_ended(store, lid, number) for number in range(ended)]


def _orders_of(store: MerchantStore, lid: bytes) -> dict[bytes, OrderState]:
    return {o.xid: o.state for o in store.orders() if o.lid_m == lid}


def test_an_offer_ended_at_the_limit_is_refused_and_nothing_changes(
    store: MerchantStore,
) -> None:
    xids = _offer_with_ended(store, b"lid-1", MAX_ORDERS_PER_OFFER)
    before = _orders_of(store, b"lid-1")
    assert set(before) == set(xids) and set(before.values()) == {
        OrderState.DECLINED, OrderState.FAILED,
    }  # fmt: skip
    with pytest.raises(OfferUsedUp) as refused:
        store.open_order(b"lid-1", b"n" * 32, b"trans-ids", b"c" * 32)
    assert (refused.value.reason, refused.value.orders) == (USED_UP, MAX_ORDERS_PER_OFFER)
    assert str(refused.value) == f"offer {b'lid-1'.hex()[:8]} {USED_UP}"
    # Nothing opened: the last ended order stays the offer's current one.
    assert _orders_of(store, b"lid-1") == before
    assert store.offer(b"lid-1").xid == xids[-1]
    # Refused again, not counting itself.
    with pytest.raises(OfferUsedUp, match=re.escape(USED_UP)):
        store.open_order(b"lid-1", b"m" * 32, b"trans-ids", b"c" * 32)


def test_only_the_offers_own_ended_orders_count(store: MerchantStore) -> None:
    """Another offer's orders, at the limit, count for it alone; an unused order of this
    one is replaced, not counted: the last order below the limit is opened and opened
    again, and only once it ends is the offer refused."""
    _offer_with_ended(store, b"lid-2", MAX_ORDERS_PER_OFFER)
    below = _offer_with_ended(store, b"lid-1", MAX_ORDERS_PER_OFFER - 1)
    for xid in (b"n" * 32, b"m" * 32):  # a wallet repeating its PInit
        assert store.open_order(b"lid-1", xid, b"trans-ids", b"c" * 32).xid == xid
    assert _orders_of(store, b"lid-1") == {
        **dict.fromkeys(below[0::3] + below[1::3], OrderState.DECLINED),
        **dict.fromkeys(below[2::3], OrderState.FAILED),
        b"m" * 32: OrderState.INITIATED,
    }
    store.record_purchase(b"m" * 32, b"u" * 32, b"oi-data", b"sealed-pi")
    store.record_failure(b"m" * 32, REFUSED_WITH)
    with pytest.raises(OfferUsedUp, match=re.escape(USED_UP)):
        store.open_order(b"lid-1", b"o" * 32, b"trans-ids", b"c" * 32)
    with pytest.raises(OfferUsedUp, match=re.escape(USED_UP)):
        store.open_order(b"lid-2", b"p" * 32, b"trans-ids", b"c" * 32)
    # A third offer, new, is opened: the limit is each offer's.
    store.add_offer(b"lid-3", b"two books", EUR, "setpay")
    assert store.open_order(b"lid-3", b"q" * 32, b"trans-ids", b"c" * 32).xid == b"q" * 32


def test_a_card_declined_at_the_limit_is_refused_and_nothing_is_opened(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One card declined again and again against one offer: the gateway decides
    ``MAX_ORDERS_PER_OFFER`` of them, and the next PInit is refused before anything is
    opened, the wallet hearing UNKNOWN_LID alone (SET-PROTOCOL.md 7.6)."""
    merchant = make_merchant("m-offer-used-up")
    wallet = make_wallet(merchant)
    # Most of the card's credit held: every purchase of the offer below is declined.
    assert buy(wallet, offer(merchant, CREDIT_LIMIT - LEFT)).auth_code == "AUTH_CODE_APPROVED"
    initiation = offer(merchant, PRICE)
    for _ in range(MAX_ORDERS_PER_OFFER):
        assert buy(wallet, initiation).auth_code == "AUTH_CODE_DECLINED"
    before = _orders_of(merchant.store, initiation.lid_m)
    assert len(before) == MAX_ORDERS_PER_OFFER
    assert set(before.values()) == {OrderState.DECLINED}
    current = merchant.store.offer(initiation.lid_m).xid

    caplog.set_level(logging.INFO, "setpay.merchant")
    with pytest.raises(PeerError) as refused:
        buy(wallet, initiation)
    assert refused.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    assert "declined" not in str(refused.value)  # the reason is the merchant's
    lid = initiation.lid_m.hex()[:8]
    said = f"PInit: order LID-M {lid} not offered again: it {USED_UP}"
    assert [r.levelno for r in caplog.records if r.getMessage() == said] == [logging.WARNING]
    assert f"PInit refused: ERROR_CODE_UNKNOWN_LID (this order {USED_UP})" in caplog.messages
    assert not [m for m in caplog.messages if "offered as XID" in m]
    assert _orders_of(merchant.store, initiation.lid_m) == before
    assert merchant.store.offer(initiation.lid_m).xid == current
