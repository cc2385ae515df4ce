"""An offer whose order ended declined or failed is offered again under a new XID, the
ended order kept; one paid for is refused, saying how (``order_store.open_order``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from clients.errors import OrderStateError, StoreError, UnknownOrder
from clients.merchant.order_store import OfferTaken
from clients.merchant.records import Authorization, OperationKind, Order, OrderState
from clients.merchant.store import MerchantStore
from setpay.v1 import authorization_pb2
from tests.clients.merchant.store_support import EUR, damage, purchased

DECLINED = authorization_pb2.AUTH_CODE_DECLINED
APPROVED = authorization_pb2.AUTH_CODE_APPROVED
# A SET ErrorCode the gateway refused an AuthReq with (any will do: the store keeps it).
REFUSED_WITH = 16
# Bounds each wait of the racing PInits on each other.
WAIT_SECONDS = 10.0


def _authorizing(store: MerchantStore, lid: bytes, xid: bytes) -> bytes:
    purchased(store, lid, xid)
    store.record_auth_request(xid, b"r" + xid[1:], b"request", b"digest")
    return xid


def _authorized(store: MerchantStore, lid: bytes, xid: bytes, code: int = APPROVED) -> bytes:
    _authorizing(store, lid, xid)
    result = Authorization(code, EUR, "ABC123", b"auth-res", b"cap-token")
    store.record_authorization(xid, result, approved=code == APPROVED)
    return xid


def _declined(store: MerchantStore, lid: bytes = b"lid-1", xid: bytes = b"x" * 32) -> bytes:
    return _authorized(store, lid, xid, DECLINED)


def _failed(store: MerchantStore, lid: bytes = b"lid-1", xid: bytes = b"x" * 32) -> bytes:
    store.record_failure(_authorizing(store, lid, xid), REFUSED_WITH)
    return xid


def _reversed(store: MerchantStore, lid: bytes, xid: bytes) -> bytes:
    _authorized(store, lid, xid)
    full = store.add_operation(
        xid, OperationKind.AUTH_REVERSAL, b"v" * 32, EUR.with_minor(0), b"req", b"dig"
    )
    store.settle_auth_reversal(full.rrpid, True, APPROVED, 0, b"")
    return xid


def _orders_of(store: MerchantStore, lid: bytes) -> dict[bytes, OrderState]:
    return {o.xid: o.state for o in store.orders() if o.lid_m == lid}


@pytest.mark.parametrize("ended", [_declined, _failed], ids=["declined", "failed"])
def test_an_ended_order_is_kept_and_its_offer_opened_again(
    store: MerchantStore, ended: Callable[[MerchantStore], bytes]
) -> None:
    old_xid = ended(store)
    old = store.order(old_xid)
    new = store.open_order(b"lid-1", b"n" * 32, b"trans-ids-2", b"d" * 32, b"s" * 32)
    assert (new.xid, new.state, new.lid_m) == (b"n" * 32, OrderState.INITIATED, b"lid-1")
    # The new order starts clean: nothing of the ended one's purchase or authorization.
    assert (new.trans_ids, new.chall_m, new.signer_thumb) == (b"trans-ids-2", b"d" * 32, b"s" * 32)
    assert (new.pi, new.oi_data, new.cardholder_thumb, new.authorization) == (None,) * 4
    assert (new.auth_rrpid, new.auth_request, new.error_code) == (None, None, 0)
    # The ended order stays as it ended, for its wallet's Inquiry and the listing.
    assert store.order(old_xid) == old
    assert store.offer(b"lid-1").xid == b"n" * 32
    assert _orders_of(store, b"lid-1") == {old_xid: old.state, b"n" * 32: OrderState.INITIATED}
    # Paid with another card: the new order alone moves on.
    store.record_purchase(new.xid, b"u" * 32, b"oi-2", b"pi-2")
    store.record_auth_request(new.xid, b"q" * 32, b"request-2", b"digest-2")
    result = Authorization(APPROVED, EUR, "XYZ789", b"auth-res-2", b"cap-token-2")
    assert store.record_authorization(new.xid, result, approved=True).authorization == result
    assert store.order(old_xid) == old


def test_an_offer_declined_again_is_opened_again_each_order_kept(store: MerchantStore) -> None:
    _declined(store, xid=b"1" * 32)
    store.open_order(b"lid-1", b"2" * 32, b"t", b"c" * 32)
    store.record_purchase(b"2" * 32, b"u" * 32, b"oi", b"pi")
    store.record_failure(b"2" * 32, REFUSED_WITH)  # no AuthReq could be built
    store.open_order(b"lid-1", b"3" * 32, b"t", b"c" * 32)
    store.open_order(b"lid-1", b"4" * 32, b"t", b"c" * 32)  # the unused one replaced
    assert _orders_of(store, b"lid-1") == {
        b"1" * 32: OrderState.DECLINED,
        b"2" * 32: OrderState.FAILED,
        b"4" * 32: OrderState.INITIATED,
    }
    assert store.offer(b"lid-1").xid == b"4" * 32


@pytest.mark.parametrize(
    ("paid", "state", "reason"),
    [
        (purchased, OrderState.PURCHASED, "is already paid and being authorized"),
        (_authorizing, OrderState.AUTHORIZING, "is already paid and being authorized"),
        (_authorized, OrderState.AUTHORIZED, "is already paid and authorized"),
        (_reversed, OrderState.REVERSED, "was paid and its authorization reversed"),
    ],
    ids=["purchased", "authorizing", "authorized", "reversed"],
)
def test_an_offer_paid_for_is_refused_saying_how_and_nothing_changes(
    store: MerchantStore,
    paid: Callable[[MerchantStore, bytes, bytes], object],
    state: OrderState,
    reason: str,
) -> None:
    paid(store, b"lid-1", b"x" * 32)
    before = store.order(b"x" * 32)
    assert before.state is state
    with pytest.raises(OfferTaken) as refused:
        store.open_order(b"lid-1", b"n" * 32, b"t", b"d" * 32)
    assert isinstance(refused.value, OrderStateError)  # what callers before it caught
    assert str(refused.value) == f"offer {b'lid-1'.hex()[:8]} {reason} (order {'78' * 4})"
    taken = refused.value
    assert (taken.reason, taken.xid, taken.state) == (reason, b"x" * 32, state)
    assert store.order(b"x" * 32) == before
    assert store.offer(b"lid-1").xid == b"x" * 32
    with pytest.raises(UnknownOrder):
        store.order(b"n" * 32)


def test_an_offer_whose_order_is_damaged_is_not_opened_again(
    store: MerchantStore, tmp_path: Path
) -> None:
    """Its order may be paid for: a state no setpay writes is a damaged file, not a
    reason to take another payment."""
    xid = _declined(store)
    damage(tmp_path / "merchant.db", "UPDATE orders SET state = 'paid-ish'")
    with pytest.raises(StoreError, match=f"order {xid.hex()[:8]} has 'paid-ish'"):
        store.open_order(b"lid-1", b"n" * 32, b"t", b"d" * 32)
    assert store.offer(b"lid-1").xid == xid
    with pytest.raises(UnknownOrder):
        store.order(b"n" * 32)


def _at_once(lid: bytes, pinits: tuple[tuple[MerchantStore, bytes], ...]) -> list[Order]:
    """Each store opens the offer again under its XID, all at the same moment: the
    orders opened (a PInit refused or failed opens none)."""
    together = threading.Barrier(len(pinits), timeout=WAIT_SECONDS)
    opened: list[Order] = []

    def pinit(store: MerchantStore, xid: bytes) -> None:
        together.wait()
        opened.append(store.open_order(lid, xid, b"t", b"c" * 32))

    threads = [threading.Thread(target=pinit, args=pinit_) for pinit_ in pinits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS * 2)
    return opened


@pytest.mark.parametrize("ended", [_declined, _failed], ids=["declined", "failed"])
def test_two_pinits_at_once_on_an_ended_offer_leave_one_current_order(
    tmp_path: Path, ended: Callable[[MerchantStore, bytes, bytes], bytes]
) -> None:
    """Two processes on one file (two connections), each opening the offer again at the
    same moment, round after round: one current order, the ended one kept."""
    first, second = MerchantStore(tmp_path / "m.db"), MerchantStore(tmp_path / "m.db")
    try:
        for round_ in range(10):
            lid = b"lid-%d" % round_
            old = ended(first, lid, bytes([round_]) * 32)
            xids = (b"a" * 31 + bytes([round_]), b"b" * 31 + bytes([round_]))
            opened = _at_once(lid, ((first, xids[0]), (second, xids[1])))
            assert len(opened) == 2  # both answered: neither refused
            current = first.offer(lid).xid
            assert current in xids
            assert _orders_of(second, lid) == {
                old: first.order(old).state,
                current: OrderState.INITIATED,
            }
    finally:
        first.close()
        second.close()
