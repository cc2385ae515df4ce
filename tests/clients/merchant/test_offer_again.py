"""A declined or failed order's offer paid again with another card, under a new XID, the
ended order kept and still answered; an offer paid for refused, saying how. Against the
real gateway and a real merchant, as a wallet buys."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from clients.errors import OrderStateError
from clients.merchant.config import AnswerMode
from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from clients.wallet.purchases import Initiation
from clients.wallet.runtime import Wallet
from setcore.errors import ErrorCode, PeerError
from setcore.purchase import build_pinit_request, open_pinit_response
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import CREDIT_LIMIT, WALLET_PASSPHRASE, RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.tampering_support import gateway_hold
from tests.clients.test_purchase_flow import buy, offer

# What is left of the first card's credit once it holds most of it: less than the offer.
LEFT = 100
PRICE = 500
# A SET ErrorCode the gateway refused an AuthReq with (any will do: the merchant keeps it).
REFUSED_WITH = ErrorCode.ERROR_CODE_SIGNATURE_FAILURE
# Bounds each wait of the racing PInits on each other.
WAIT_SECONDS = 10.0


def _declined(merchant: Merchant, wallet: Wallet) -> tuple[Initiation, bytes]:
    """An offer the wallet's card is declined for (its credit held by an earlier
    purchase), and that order's XID."""
    assert buy(wallet, offer(merchant, CREDIT_LIMIT - LEFT)).auth_code == "AUTH_CODE_APPROVED"
    initiation = offer(merchant, PRICE)
    record = buy(wallet, initiation)
    assert (record.completion, record.auth_code) == (
        "COMPLETION_CODE_AUTHORIZATION_PERFORMED", "AUTH_CODE_DECLINED",
    )  # fmt: skip
    return initiation, bytes.fromhex(record.xid)


def _orders_of(merchant: Merchant, lid_m: bytes) -> dict[bytes, OrderState]:
    """The offer's orders, as ``setpay merchant orders`` lists them."""
    return {o.xid: o.state for o in merchant.store.orders() if o.lid_m == lid_m}


def test_a_declined_offer_is_paid_with_another_card(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-declined-again")
    first_wallet = make_wallet(merchant)
    initiation, old_xid = _declined(merchant, first_wallet)
    old = merchant.store.order(old_xid)
    assert old.state is OrderState.DECLINED

    caplog.set_level(logging.INFO, "setpay.merchant")
    second = buy(make_wallet(merchant), initiation)  # another cardholder, another card
    assert (second.completion, second.auth_code, second.auth_amount) == (
        "COMPLETION_CODE_AUTHORIZATION_PERFORMED", "AUTH_CODE_APPROVED", PRICE,
    )  # fmt: skip
    new_xid = bytes.fromhex(second.xid)
    assert new_xid != old_xid
    assert merchant.store.offer(initiation.lid_m).xid == new_xid
    assert _orders_of(merchant, initiation.lid_m) == {
        old_xid: OrderState.DECLINED, new_xid: OrderState.AUTHORIZED,
    }  # fmt: skip
    assert not [m for m in caplog.messages if "refused" in m]

    # The declined order as it ended: its wallet's Inquiry still answered with the decline.
    assert merchant.store.order(old_xid) == old
    answered = first_wallet.shopper(WALLET_PASSPHRASE).inquire(
        first_wallet.config.require_merchant(), old_xid.hex()[:8]
    )
    assert (answered.completion, answered.auth_code) == (
        "COMPLETION_CODE_AUTHORIZATION_PERFORMED", "AUTH_CODE_DECLINED",
    )  # fmt: skip

    # Nothing of the new authorization is the declined order's: it is never captured.
    with pytest.raises(OrderStateError, match=f"order {old_xid.hex()[:8]} is declined"):
        merchant.settlement.capture(old_xid)
    assert merchant.store.operations(old_xid) == []
    merchant.settlement.capture(new_xid)
    assert gateway_hold(bank, new_xid).transfers == {"authorization": 1, "capture": 1}
    assert merchant.store.order(old_xid) == old
    assert merchant.store.operations(old_xid) == []


def test_a_failed_orders_offer_is_paid_with_another_card(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """The first order failed: ended here as the authorizer ends one the gateway refused
    with a verified SET Error (``record_failure``; no AuthReq is sent for it), so its
    wallet hears ORDER_REJECTED, and the offer is paid again."""
    merchant = make_merchant("m-failed-again", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)  # the test authorizes; no worker races it
    initiation = offer(merchant, PRICE)
    first_wallet = make_wallet(merchant)
    first = buy(first_wallet, initiation)
    assert first.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    old_xid = bytes.fromhex(first.xid)
    old = merchant.store.record_failure(old_xid, REFUSED_WITH)

    second_wallet = make_wallet(merchant)
    second = buy(second_wallet, initiation)
    assert second.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    new_xid = bytes.fromhex(second.xid)
    assert new_xid != old_xid
    assert merchant.authorizer.authorize(new_xid).state is OrderState.AUTHORIZED
    assert _orders_of(merchant, initiation.lid_m) == {
        old_xid: OrderState.FAILED, new_xid: OrderState.AUTHORIZED,
    }  # fmt: skip
    assert merchant.store.order(old_xid) == old

    for wallet, xid, completion in (
        (first_wallet, old_xid, "COMPLETION_CODE_ORDER_REJECTED"),
        (second_wallet, new_xid, "COMPLETION_CODE_AUTHORIZATION_PERFORMED"),
    ):
        answered = wallet.shopper(WALLET_PASSPHRASE).inquire(
            wallet.config.require_merchant(), xid.hex()[:8]
        )
        assert answered.completion == completion


def _refused_again(
    merchant: Merchant,
    make_wallet: WalletFactory,
    initiation: Initiation,
    caplog: pytest.LogCaptureFixture,
    reason: str,
) -> None:
    """Another card's purchase of the offer is refused before anything is opened: the
    refusal's reason, as the merchant logs it, says how the offer is paid for."""
    (xid,) = _orders_of(merchant, initiation.lid_m)
    before = merchant.store.order(xid)
    caplog.clear()
    caplog.set_level(logging.INFO, "setpay.merchant")
    with pytest.raises(PeerError) as refused:
        buy(make_wallet(merchant), initiation)
    assert refused.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    # The wallet hears the code alone (SET-PROTOCOL.md 7.6); the reason is the merchant's.
    assert "paid" not in str(refused.value)
    assert f"PInit refused: ERROR_CODE_UNKNOWN_LID (this order {reason})" in caplog.messages
    said = f"its order {xid.hex()[:8]} is {before.state.value}"
    assert [m for m in caplog.messages if said in m]
    assert merchant.store.order(xid) == before
    assert merchant.store.offer(initiation.lid_m).xid == xid
    assert _orders_of(merchant, initiation.lid_m) == {xid: before.state}


def test_an_authorized_offer_is_refused_as_paid(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, caplog: pytest.LogCaptureFixture
) -> None:
    merchant = make_merchant("m-authorized-again")
    initiation = offer(merchant, PRICE)
    assert buy(make_wallet(merchant), initiation).auth_code == "AUTH_CODE_APPROVED"
    _refused_again(merchant, make_wallet, initiation, caplog, "is already paid and authorized")


def test_a_purchased_then_authorizing_offer_is_refused_as_being_authorized(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, caplog: pytest.LogCaptureFixture
) -> None:
    merchant = make_merchant("m-authorizing-again", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)  # the order stays as the test puts it
    initiation = offer(merchant, PRICE)
    xid = bytes.fromhex(buy(make_wallet(merchant), initiation).xid)
    assert merchant.store.order(xid).state is OrderState.PURCHASED
    being = "is already paid and being authorized"
    _refused_again(merchant, make_wallet, initiation, caplog, being)
    # Its AuthReq stored, its answer awaited (the worker stopped: never sent here).
    merchant.store.record_auth_request(xid, os.urandom(32), b"request", b"digest")
    _refused_again(merchant, make_wallet, initiation, caplog, being)


def test_a_reversed_offer_is_refused_as_reversed(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, caplog: pytest.LogCaptureFixture
) -> None:
    merchant = make_merchant("m-reversed-again")
    initiation = offer(merchant, PRICE)
    xid = bytes.fromhex(buy(make_wallet(merchant), initiation).xid)
    merchant.settlement.reverse_authorization(xid)
    assert merchant.store.order(xid).state is OrderState.REVERSED
    reason = "was paid and its authorization reversed"
    _refused_again(merchant, make_wallet, initiation, caplog, reason)


@pytest.mark.parametrize("declined", [True, False], ids=["declined", "unused"])
def test_two_pinits_at_once_leave_one_current_order(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, declined: bool
) -> None:
    """Both answered with an offer (neither an unexpected failure: the first's order,
    dropped by the second, is read back before it is), one order current and unused,
    the declined one kept."""
    merchant = make_merchant(f"m-pinit-race-{declined}")
    kept: dict[bytes, OrderState] = {}
    if declined:
        initiation, old_xid = _declined(merchant, make_wallet(merchant))
        kept[old_xid] = OrderState.DECLINED
    else:
        initiation = offer(merchant, PRICE)
    wallet = make_wallet(merchant)
    card = wallet.card(WALLET_PASSPHRASE).card()
    wallet.revocation.ensure_fresh()
    both = threading.Barrier(2, timeout=WAIT_SECONDS)
    offered: list[bytes] = []

    def pinit() -> None:
        request, state = build_pinit_request(
            card.pan, "setpay", os.urandom(16), lid_m=initiation.lid_m
        )
        both.wait()
        answer: purchase_pb2.PInitResponse = merchant.checkout.pinit(request)
        offered.append(open_pinit_response(answer, state, wallet.trust).trans_ids.xid)

    threads = [threading.Thread(target=pinit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS * 2)
    assert len(offered) == 2 and len(set(offered)) == 2  # both offered, each its own XID
    current = merchant.store.offer(initiation.lid_m).xid
    assert current in offered
    assert _orders_of(merchant, initiation.lid_m) == {**kept, current: OrderState.INITIATED}
