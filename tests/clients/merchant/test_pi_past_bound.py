"""An order whose PI is older than the gateway's bound (``setcore.freshness.PI_MAX_AGE_MS``)
ends failed with the gateway's MESSAGE_TOO_OLD once the PI is past it by the margin, and
is never built afresh: no AuthReq around that PI can pass (``clients.merchant.renewal``).

Before, the merchant read every MESSAGE_TOO_OLD as its stored AuthReq gone stale: it
built one afresh around the same PI, which the gateway refused in turn; and an AuthReq
stored only just now waited out the renewal margin first, sent again and refused at
every round, before being built afresh and refused. The merchant still waits wherever
an earlier sending of the same bytes, let in while the PI was young, may still be inside
the gateway: within the margin, and, past it, while the AuthReq was stored too recently
for ``renewal.may_renew`` (``test_renewal_in_flight``). Each test runs against the real
gateway, time moved on every clock but the ledger's (``tests.clocks``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from clients.errors import TransportError
from clients.merchant import database, renewal
from clients.merchant.authorizer import Authorizer
from clients.merchant.batches import Batches
from clients.merchant.records import Order, OrderState
from clients.merchant.runtime import Merchant
from clients.merchant.settlement import Settlement
from clients.merchant.stored_requests import StoredRequests
from clients.wallet.runtime import Wallet
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, PI_MAX_AGE_MS, now_ms
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import GatewayOutage
from tests.clients.test_purchase_flow import buy, offer
from tests.clocks import clocks_moved

TOO_OLD = ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
MARGIN_MS = renewal.RENEW_MARGIN_MS
# Past the bound and its margin: the PI is too old on any clock the margin allows.
WELL_PAST_MS = PI_MAX_AGE_MS + MARGIN_MS + 10_000
# Past the bound, within the margin: too old for the gateway, not surely to the merchant.
JUST_PAST_MS = PI_MAX_AGE_MS + MARGIN_MS // 2
# What the merchant's log says of an order ended for its PI's age.
PAST_BOUND = "past the gateway's bound of 7 days: no AuthReq around it can be authorized"


def _sendings(monkeypatch: pytest.MonkeyPatch, merchant: Merchant) -> list[bytes]:
    """The AuthReq bytes the merchant sends from now on, each in order."""
    sent: list[bytes] = []
    real = merchant.gateway.authorize

    def counted(request: bytes, *args: object, **kwargs: object) -> object:
        sent.append(request)
        return real(request, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(merchant.gateway, "authorize", counted)
    return sent


def _bought_ago(
    monkeypatch: pytest.MonkeyPatch, merchant: Merchant, wallet: Wallet, ago_ms: int
) -> str:
    """An order bought ``ago_ms`` ago: wallet and merchant on clocks moved back as much
    (the gateway's with them: a BCI is current for days, not for a week ahead), the
    merchant's store dating its rows then too, then back to now; its XID."""
    with monkeypatch.context() as then:
        clocks_moved(then, -ago_ms)
        row_clock = database.now_ms
        for name, module in list(sys.modules.items()):
            if name.startswith("clients.") and getattr(module, "now_ms", None) is row_clock:
                then.setattr(module, "now_ms", lambda: row_clock() - ago_ms)
        record = buy(wallet, offer(merchant, 700))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    return record.xid


def _bought_in_an_outage(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    ago_ms: int,
    name: str,
) -> tuple[Merchant, GatewayOutage, Order]:
    """A merchant whose gateway went away ``ago_ms`` ago, and an order bought then, with
    the gateway back now: authorizing, its AuthReq stored and dated then (with its PI's
    PReqDate). The worker is stopped, so that only the test sends."""
    outage = GatewayOutage(bank)
    merchant = make_merchant(name, gateway_target=outage.target)
    merchant.authorizer.stop(timeout=10)
    wallet = make_wallet(merchant)
    outage.stop()
    xid = _bought_ago(monkeypatch, merchant, wallet, ago_ms)
    outage.end(merchant)
    order = merchant.store.order(bytes.fromhex(xid))
    assert order.state is OrderState.AUTHORIZING and order.auth_request is not None
    return merchant, outage, order


def _bought_unbuilt(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    ago_ms: int,
    name: str,
) -> tuple[Merchant, GatewayOutage, Order]:
    """As ``_bought_in_an_outage``, but the order's AuthReq could not be built then (the
    gateway's certificates out of reach): the order stays purchased, nothing stored, for
    an AuthReq built and dated when it is next tried."""
    outage = GatewayOutage(bank)
    merchant = make_merchant(name, gateway_target=outage.target)
    merchant.authorizer.stop(timeout=10)
    wallet = make_wallet(merchant)

    def unreachable(order: Order) -> object:
        raise TransportError("gateway GatewayCertificates", "UNAVAILABLE")

    with monkeypatch.context() as building:
        building.setattr(merchant.authorizer, "_build", unreachable)
        xid = _bought_ago(monkeypatch, merchant, wallet, ago_ms)
    order = merchant.store.order(bytes.fromhex(xid))
    assert order.state is OrderState.PURCHASED and order.auth_request is None
    return merchant, outage, order


def _ended_for_its_pi(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The log's lines ending an order failed for its PI (not those saying it waits)."""
    said = [r.getMessage() for r in caplog.records]
    return [m for m in said if PAST_BOUND in m and "refused by the gateway" in m]


def test_an_order_whose_pi_and_auth_request_aged_past_the_bound_ends_failed_unrebuilt(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway away for over a week: its stored AuthReq, and its PI, are too old. The
    order ends failed at the first refusal; before, an AuthReq was built afresh around
    the same PI, sent, and refused again."""
    merchant, outage, pending = _bought_in_an_outage(
        bank, make_merchant, make_wallet, monkeypatch, WELL_PAST_MS, "m-pi-1"
    )
    try:
        sent = _sendings(monkeypatch, merchant)
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            done = merchant.authorizer.authorize(pending.xid)
        assert done.state is OrderState.FAILED
        assert done.error_code == TOO_OLD
        assert done.auth_rrpid == pending.auth_rrpid  # not built afresh
        assert sent == [pending.auth_request]  # sent once, as stored
        (said,) = _ended_for_its_pi(caplog)
        assert "refused by the gateway: ERROR_CODE_MESSAGE_TOO_OLD (its PI was signed 7." in said
        assert "sent afresh" not in caplog.text
    finally:
        outage.release()


def test_an_order_whose_fresh_auth_request_carries_a_pi_past_the_bound_ends_failed_at_once(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An AuthReq built and stored only now, around a PI over a week old: the gateway
    refuses it for the PI. Before, the order waited out the renewal margin (six minutes,
    its same bytes sent and refused at every round), then was built afresh, and refused."""
    merchant, outage, bought = _bought_unbuilt(
        bank, make_merchant, make_wallet, monkeypatch, WELL_PAST_MS, "m-pi-2"
    )
    try:
        sent = _sendings(monkeypatch, merchant)
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            done = merchant.authorizer.authorize(bought.xid)
        assert done.state is OrderState.FAILED, caplog.text
        assert done.error_code == TOO_OLD
        assert done.auth_request is not None and sent == [done.auth_request]
        assert len(_ended_for_its_pi(caplog)) == 1
    finally:
        outage.release()


def test_within_the_margin_past_the_bound_the_order_waits_then_ends_failed(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only just past the bound, an earlier sending of the same bytes let in while the PI
    was young may still be inside the gateway: the order waits, its bytes unchanged. Its
    PI past the bound by the margin, it still waits while its AuthReq, stored when the PI
    was only just past, may have a sending being decided (``renewal.may_renew``); then it
    ends failed, never built afresh."""
    merchant, outage, bought = _bought_unbuilt(
        bank, make_merchant, make_wallet, monkeypatch, JUST_PAST_MS, "m-pi-3"
    )
    try:
        sent = _sendings(monkeypatch, merchant)
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            waiting = merchant.authorizer.authorize(bought.xid)
        assert waiting.state is OrderState.AUTHORIZING
        assert waiting.auth_request is not None and sent == [waiting.auth_request]
        assert not _ended_for_its_pi(caplog)
        assert "refused as too old, but only just" in caplog.text
        clocks_moved(monkeypatch, WELL_PAST_MS - JUST_PAST_MS)
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            still = merchant.authorizer.authorize(bought.xid)
        assert still.state is OrderState.AUTHORIZING
        assert not _ended_for_its_pi(caplog)
        clocks_moved(monkeypatch, FRESHNESS_WINDOW_MS + MARGIN_MS)
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            done = merchant.authorizer.authorize(bought.xid)
        assert done.state is OrderState.FAILED and done.error_code == TOO_OLD
        assert done.auth_rrpid == waiting.auth_rrpid
        assert sent == [waiting.auth_request] * 3
        assert len(_ended_for_its_pi(caplog)) == 1
    finally:
        outage.release()


def test_the_pi_is_judged_as_of_the_sending_not_of_the_refusal_coming_back(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refusal sent while the PI was within the margin, whose answer came back once it
    was past it: the gateway decided it as the sending began, when an earlier sending
    could still be inside it, so the order waits."""
    merchant, outage, bought = _bought_unbuilt(
        bank, make_merchant, make_wallet, monkeypatch, JUST_PAST_MS, "m-pi-4"
    )
    try:
        real = merchant.gateway.authorize

        def slow(*args: object, **kwargs: object) -> object:
            try:
                return real(*args, **kwargs)  # type: ignore[arg-type]
            finally:
                clocks_moved(monkeypatch, WELL_PAST_MS - JUST_PAST_MS)  # the answer's wait

        monkeypatch.setattr(merchant.gateway, "authorize", slow)
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            waiting = merchant.authorizer.authorize(bought.xid)
        assert waiting.state is OrderState.AUTHORIZING, caplog.text
        assert not _ended_for_its_pi(caplog)
    finally:
        outage.release()


def test_an_order_whose_pi_is_within_the_bound_is_still_built_afresh(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its stored AuthReq gone stale, a PI short of the bound by the margin: built afresh
    around the same PI and authorized, as before."""
    merchant, outage, pending = _bought_in_an_outage(
        bank, make_merchant, make_wallet, monkeypatch, PI_MAX_AGE_MS - MARGIN_MS - 10_000, "m-pi-5"
    )
    try:
        done = merchant.authorizer.authorize(pending.xid)
        assert done.state is OrderState.AUTHORIZED
        assert done.auth_rrpid != pending.auth_rrpid
    finally:
        outage.release()


@pytest.mark.parametrize(
    ("age_ms", "ends"),
    [
        (PI_MAX_AGE_MS + MARGIN_MS, True),
        (PI_MAX_AGE_MS + MARGIN_MS - 1, False),
        (PI_MAX_AGE_MS, False),
        (0, False),
    ],
)
def test_a_pi_is_past_the_bound_only_by_the_margin(age_ms: int, ends: bool) -> None:
    sent_ms = now_ms()
    reason = renewal.pi_past_bound(sent_ms - age_ms, sent_ms)
    assert (reason is not None) is ends
    if reason is not None:
        assert PAST_BOUND in reason


@pytest.mark.parametrize("kind", [Settlement, Batches])
def test_only_an_order_is_ever_ended_for_a_pi(kind: type[StoredRequests[Any]]) -> None:
    """Nothing but an order has a PI: the other kinds keep ``renewal``'s rules alone."""
    assert kind._never_renewable is StoredRequests._never_renewable
    assert Authorizer._never_renewable is not StoredRequests._never_renewable
