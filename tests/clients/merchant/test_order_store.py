"""The merchant's offers and orders, with each order's authorization (``order_store``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import ConfigError, OrderStateError, StoreError, UnknownOrder
from clients.merchant.order_store import OfferTaken
from clients.merchant.records import (
    Authorization,
    Money,
    OperationKind,
    OperationState,
    OrderState,
)
from clients.merchant.store import MerchantStore
from tests.clients.merchant.store_support import EUR, damage, purchased


def test_order_life(store: MerchantStore) -> None:
    store.add_offer(b"lid-1", b"two books", EUR, "setpay")
    order = store.open_order(b"lid-1", b"x" * 32, b"trans-ids", b"c" * 32)
    assert order.state is OrderState.INITIATED
    assert order.description == b"two books" and order.amount == EUR
    order = store.record_purchase(order.xid, b"t" * 32, b"oi", b"pi-bytes")
    assert order.state is OrderState.PURCHASED and order.pi == b"pi-bytes"
    order = store.record_auth_request(order.xid, b"r" * 32, b"request", b"digest")
    assert order.state is OrderState.AUTHORIZING and order.auth_request == b"request"
    result = Authorization(1, EUR, "ABC123", b"auth-res", b"cap-token")
    order = store.record_authorization(order.xid, result, approved=True)
    assert order.state is OrderState.AUTHORIZED
    assert order.authorization == result
    partial = store.add_operation(
        order.xid, OperationKind.AUTH_REVERSAL, b"p" * 32, EUR.with_minor(500), b"req", b"dig"
    )
    settled = store.settle_auth_reversal(partial.rrpid, True, 1, 500, b"new-token")
    assert settled.state is OperationState.SUCCEEDED and settled.result_amount == 500
    order = store.order(order.xid)
    assert order.state is OrderState.AUTHORIZED
    assert order.authorization is not None
    assert order.authorization.amount.minor == 500
    assert order.authorization.cap_token == b"new-token"
    full = store.add_operation(
        order.xid, OperationKind.AUTH_REVERSAL, b"f" * 32, EUR.with_minor(0), b"req", b"dig"
    )
    store.settle_auth_reversal(full.rrpid, True, 1, 0, b"")
    assert store.order(order.xid).state is OrderState.REVERSED


def test_auth_request_renewed_once(store: MerchantStore) -> None:
    xid = purchased(store)
    store.record_auth_request(xid, b"r" * 32, b"request", b"digest")
    order = store.renew_auth_request(xid, b"r" * 32, b"n" * 32, b"request-2", b"digest-2")
    assert order.state is OrderState.AUTHORIZING
    assert (order.auth_rrpid, order.auth_request, order.auth_request_digest) == (
        b"n" * 32, b"request-2", b"digest-2",
    )  # fmt: skip
    with pytest.raises(OrderStateError, match="already replaced"):
        store.renew_auth_request(xid, b"r" * 32, b"m" * 32, b"request-3", b"digest-3")
    store.record_failure(xid, 16)
    # Only a pending authorization is renewed.
    with pytest.raises(OrderStateError, match="is failed, not authorizing-able"):
        store.renew_auth_request(xid, b"n" * 32, b"m" * 32, b"request-3", b"digest-3")


def test_transitions_out_of_order_refused(store: MerchantStore) -> None:
    store.add_offer(b"lid-1", b"two books", EUR, "setpay")
    xid = store.open_order(b"lid-1", b"x" * 32, b"trans-ids", b"c" * 32).xid
    with pytest.raises(OrderStateError):
        store.record_auth_request(xid, b"r" * 32, b"request", b"digest")
    with pytest.raises(OrderStateError):  # nothing paid for yet: nothing to fail
        store.record_failure(xid, 8)
    store.record_purchase(xid, b"t" * 32, b"oi", b"pi")
    with pytest.raises(OrderStateError):
        store.record_purchase(xid, b"t" * 32, b"oi", b"pi")
    # A purchased order may end failed (no AuthReq it would take can be built), once.
    assert store.record_failure(xid, 8).state is OrderState.FAILED
    with pytest.raises(OrderStateError):
        store.record_failure(xid, 8)


def test_an_order_fails_with_nothing_sent_only_while_purchased(store: MerchantStore) -> None:
    """``fail_unsent`` (no AuthReq the gateway would take can be built) ends a purchased
    order alone: once authorizing, its AuthReq may have reached the gateway, which may hold
    money for it, and failing it would open its offer to a second payment. Refused then,
    and nothing changes."""
    store.add_offer(b"lid-1", b"two books", EUR, "setpay")
    xid = store.open_order(b"lid-1", b"x" * 32, b"trans-ids", b"c" * 32).xid
    with pytest.raises(OrderStateError, match="is initiated, not failed-able"):
        store.fail_unsent(xid, 8)
    store.record_purchase(xid, b"t" * 32, b"oi", b"pi")
    authorizing = store.record_auth_request(xid, b"r" * 32, b"request", b"digest")
    assert store.fail_unsent(xid, 8) == authorizing == store.order(xid)
    with pytest.raises(OfferTaken):  # still being paid for: not offered again
        store.open_order(b"lid-1", b"n" * 32, b"trans-ids", b"c" * 32)
    with pytest.raises(UnknownOrder):
        store.fail_unsent(b"n" * 32, 8)
    # A purchased order ends failed, with nothing sent, its offer open again.
    other = purchased(store, b"lid-2", b"y" * 32)
    failed = store.fail_unsent(other, 8)
    assert (failed.state, failed.error_code, failed.auth_request) == (OrderState.FAILED, 8, None)
    assert store.fail_unsent(other, 9) == failed  # failed already: returned as it is
    assert store.open_order(b"lid-2", b"z" * 32, b"t", b"c" * 32).state is OrderState.INITIATED


def test_unknown_keys(store: MerchantStore) -> None:
    with pytest.raises(UnknownOrder):
        store.order(b"n" * 32)
    with pytest.raises(UnknownOrder):
        store.offer(b"nope")
    with pytest.raises(UnknownOrder):
        store.open_order(b"nope", b"x" * 32, b"t", b"c" * 32)
    with pytest.raises(UnknownOrder):
        store.operation(b"n" * 32)


def test_offer_ids_are_unique(store: MerchantStore) -> None:
    store.add_offer(b"lid-1", b"a", EUR, "setpay")
    with pytest.raises(OrderStateError):
        store.add_offer(b"lid-1", b"b", EUR, "setpay")


@pytest.mark.parametrize(
    ("lid", "amount", "refusal"),
    [
        (b"lid-1", Money(0, 1250), r"in currency 0 \(exponent 2\): currency must be an ISO"),
        (b"lid-1", Money(978, 0), r"amount 0 in currency 978 \(exponent 2\): amount must be"),
        (b"lid-1", Money(978, 1250, 7), r"\(exponent 7\): amount exponent must be 2 for"),
        # The yen has no minor unit: 1250 at exponent 2 would be 12.50 yen.
        (b"lid-1", Money(392, 1250), r"exponent must be 0 for currency 392"),
        (b"", EUR, "LID-M"),
    ],
)
def test_an_offer_no_purchase_could_complete_is_not_recorded(
    store: MerchantStore, lid: bytes, amount: Money, refusal: str
) -> None:
    # The store checks, not the CLI only: the demo and any other caller record offers too.
    with pytest.raises(ConfigError, match=refusal):
        store.add_offer(lid, b"a lamp", amount, "setpay")
    with pytest.raises(UnknownOrder):
        store.offer(lid)


def test_repeated_pinit_replaces_the_unpaid_order(store: MerchantStore) -> None:
    store.add_offer(b"lid-1", b"a", EUR, "setpay")
    store.open_order(b"lid-1", b"1" * 32, b"t", b"c" * 32)
    store.open_order(b"lid-1", b"2" * 32, b"t", b"d" * 32)
    with pytest.raises(UnknownOrder):
        store.order(b"1" * 32)
    assert store.offer(b"lid-1").xid == b"2" * 32
    store.record_purchase(b"2" * 32, b"t" * 32, b"oi", b"pi")
    with pytest.raises(OrderStateError, match="already paid and being authorized"):
        store.open_order(b"lid-1", b"3" * 32, b"t", b"e" * 32)


def test_find_order_by_prefix(store: MerchantStore) -> None:
    xid = purchased(store, xid=bytes.fromhex("ab" * 32))
    purchased(store, lid=b"lid-2", xid=bytes.fromhex("ac" * 32))
    assert store.find_order("abab").xid == xid
    assert store.find_order("ababa").xid == xid
    with pytest.raises(UnknownOrder, match="ambiguous"):
        store.find_order("a")
    with pytest.raises(UnknownOrder):
        store.find_order("ff")
    with pytest.raises(UnknownOrder):
        store.find_order("zz")


@pytest.mark.parametrize("state", ["'paid-ish'", "7", "'a state far longer than any'"])
def test_an_order_in_a_state_no_setpay_writes_is_a_store_error(
    store: MerchantStore, tmp_path: Path, state: str
) -> None:
    xid = purchased(store)
    damage(tmp_path / "merchant.db", f"UPDATE orders SET state = {state}")
    for read in (lambda: store.order(xid), store.orders, lambda: store.find_order(xid.hex())):
        with pytest.raises(StoreError) as caught:
            read()
        message = str(caught.value)
        assert message.startswith(f"merchant database damaged: order {xid.hex()[:8]} has ")
        assert "an order state" in message
    # A value short enough to be no card number is shown; a longer one is not.
    assert ("'paid-ish'" in message) == (state == "'paid-ish'")
    assert "far longer" not in message
