"""Authorization as a stored request (``stored_requests``), where it differs from the
others: one sending per order at a time whoever asks, revocation data fetched when an
answer could not be checked without it, the CA away or not, and an AuthReq that cannot be
built now (the gateway away when its certificates are due again). Against the real
gateway."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import grpc
import pytest

from clients.merchant.config import AnswerMode
from clients.merchant.gateway_client import GATEWAY_CERTIFICATES_TTL
from clients.merchant.records import Order, OrderState
from clients.merchant.runtime import Merchant
from gateway.ca import CertificateAuthorityServicer
from gateway.health_monitor import HealthMonitor
from gateway.ports import reserve
from gateway.process import tls_config
from gateway.server import ServiceBinding, create_server
from setcore.authorization import AuthRequestState, AuthResult
from setcore.pki.bci import RevocationUnavailable
from tests.clients.bank_support import LIMITS, RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.authorizer_support import purchase_against_scan
from tests.clients.merchant.outage_support import GatewayOutage, restart
from tests.clients.test_purchase_flow import buy, offer

# Bounds every wait on the other thread: each comes within milliseconds; this only turns
# a hang into a failure on a loaded machine.
WAIT_SECONDS = 20.0


def test_a_purchase_and_the_worker_authorize_one_order_once(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's scan (``resume``) finds an order a Purchase is authorizing: it waits
    for that authorization and sends nothing; one AuthReq reaches the gateway."""
    merchant = make_merchant("m-auth-once", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)  # its scans are made by the test here
    record = buy(make_wallet(merchant), offer(merchant, 800))
    xid = bytes.fromhex(record.xid)
    answers, sent = purchase_against_scan(merchant, xid, monkeypatch)
    done = answers["purchase"]
    assert isinstance(done, Order) and done.state is OrderState.AUTHORIZED
    assert answers["scan"] == [done]
    assert sent == [done.auth_request]


def test_an_answer_unchecked_for_want_of_revocation_data_fetches_it(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The order stays authorizing, revocation data is fetched, and the same AuthReq,
    sent again, authorizes it."""
    merchant = make_merchant("m-auth-revocation", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)
    record = buy(make_wallet(merchant), offer(merchant, 800))
    xid = bytes.fromhex(record.xid)
    real, refresh = merchant.gateway.authorize, merchant.revocation.refresh
    sent: list[bytes] = []
    refreshed: list[bool] = []

    def stale_once(request: bytes, state: AuthRequestState, **deadline: float) -> AuthResult:
        sent.append(request)
        if len(sent) == 1:
            raise RevocationUnavailable("the BCI is stale")
        return real(request, state, **deadline)

    def counted_refresh() -> bool:
        refreshed.append(True)
        return refresh()

    monkeypatch.setattr(merchant.gateway, "authorize", stale_once)
    monkeypatch.setattr(merchant.revocation, "refresh", counted_refresh)
    pending = merchant.authorizer.authorize(xid)
    assert pending.state is OrderState.AUTHORIZING and pending.unverified == 0
    assert refreshed == [True]
    done = merchant.authorizer.authorize(xid)
    assert done.state is OrderState.AUTHORIZED and done.auth_rrpid == pending.auth_rrpid
    assert sent == [pending.auth_request] * 2


def _serve_ca(bank: RunningBank, port: int) -> tuple[grpc.Server, int, HealthMonitor]:
    """The bank's CertificateAuthority service on a server of its own, to stop, on a port
    a reservation holds (``gateway.ports``: the server binds it beside the reservation)."""
    binding = ServiceBinding(
        "CertificateAuthorityService", CertificateAuthorityServicer(bank.authority)
    )
    return create_server(
        [binding], f"127.0.0.1:{port}", replace(LIMITS, reuse_port=True),
        tls=tls_config(bank.config, mutual=False), reflection_enabled=False,
    )  # fmt: skip


def test_a_ca_away_when_an_answer_needs_revocation_data_leaves_the_order_received(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway authorizes, its answer cannot be checked for want of current
    revocation data, and the CA that would give it is away: the Purchase is answered
    "order received" at its first attempt, as for the gateway away (not UNAVAILABLE,
    which only the wallet's retry of the same PReq turned into that answer), and the
    order stays authorizing; the same AuthReq, the CA back, authorizes it."""
    first = make_merchant("m-auth-ca-away")
    first.close()  # started again below, on a CA of its own that can go away
    # The CA comes back on the same port: held by a socket that never listens (what
    # ``gateway.ports`` does for the gateway's workers), so no other process takes it
    # while the CA is away, and a merchant's calls meanwhile are refused as by a CA down.
    held = reserve("127.0.0.1:0")
    ca_port = held.port
    ca = [_serve_ca(bank, ca_port)]
    monkeypatch.setenv("SETPAY_MERCHANT_CA", f"127.0.0.1:{ca_port}")
    merchant = restart(first.config.base_dir)
    try:
        merchant.authorizer.stop(timeout=10)  # its scans would race the Purchase
        wallet = make_wallet(merchant)
        server, _, health = ca.pop()
        health.stop()
        server.stop(grace=None).wait()
        real = merchant.gateway.authorize
        sent: list[bytes] = []

        def unchecked_once(
            request: bytes, state: AuthRequestState, **deadline: float
        ) -> AuthResult:
            sent.append(request)
            answered = real(request, state, **deadline)  # the gateway did authorize
            if len(sent) == 1:
                raise RevocationUnavailable("the BrandCRLIdentifier is not current")
            return answered

        monkeypatch.setattr(merchant.gateway, "authorize", unchecked_once)
        caplog.set_level(logging.INFO, logger="setpay.clients.transport")
        record = buy(wallet, offer(merchant, 800))
        assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
        retried = [m for m in caplog.messages if "merchant Purchase" in m]
        assert retried == [], "the merchant's first answer was a transport failure"
        xid = bytes.fromhex(record.xid)
        pending = merchant.store.order(xid)
        assert pending.state is OrderState.AUTHORIZING and sent == [pending.auth_request]
        assert any("revocation data not fetched now" in m for m in caplog.messages)
        ca.append(_serve_ca(bank, ca_port))
        done = merchant.authorizer.authorize(xid)
        assert done.state is OrderState.AUTHORIZED and sent == [pending.auth_request] * 2
    finally:
        merchant.close()
        for server, _, health in ca:
            health.stop()
            server.stop(grace=None).wait()
        held.close()


# -- an AuthReq that cannot be built now -------------------------------------------------


def _certificates_stale_from_now(merchant: Merchant, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hour after which the merchant fetches its gateway's certificates again
    (``GATEWAY_CERTIFICATES_TTL``) has passed: the next AuthReq built asks for them."""
    later = time.monotonic() + GATEWAY_CERTIFICATES_TTL.total_seconds()
    monkeypatch.setattr(merchant.gateway_keys, "_clock", lambda: later)


def test_a_purchase_whose_authreq_cannot_be_built_is_received(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Between the wallet's PInit and its Purchase the gateway's certificates grow stale
    and the gateway goes away: building the AuthReq (its PCertReq) fails. The Purchase is
    answered "order received" at its first attempt and the order stays purchased, nothing
    sent; the gateway back, it is authorized.

    Before: the PCertReq's failure escaped ``authorize``: the Purchase was answered
    UNAVAILABLE, and only the wallet's retry of the same PReq got "order received"."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-auth-not-built", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    try:
        merchant.authorizer.stop(timeout=10)  # its scans would race the Purchase
        wallet = make_wallet(merchant)
        pinit = merchant.checkout.pinit

        def pinit_then_away(request: Any) -> Any:
            answered = pinit(request)
            _certificates_stale_from_now(merchant, monkeypatch)
            outage.stop()
            return answered

        monkeypatch.setattr(merchant.checkout, "pinit", pinit_then_away)
        caplog.set_level(logging.INFO, logger="setpay.clients.transport")
        record = buy(wallet, offer(merchant, 800))
        assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
        retried = [m for m in caplog.messages if "merchant Purchase" in m]
        assert retried == [], "the merchant's first answer was a transport failure"
        assert any("AuthReq not built now, nothing sent" in m for m in caplog.messages)
        xid = bytes.fromhex(record.xid)
        pending = merchant.store.order(xid)
        assert pending.state is OrderState.PURCHASED and pending.auth_request is None
        outage.end(merchant)
        assert merchant.authorizer.authorize(xid).state is OrderState.AUTHORIZED
    finally:
        merchant.close()
        outage.release()


def test_a_round_that_cannot_build_an_authreq_for_want_of_the_gateway_ends_there(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two orders purchased, to authorize in the background; the gateway's certificates
    stale and the gateway away. The worker's round meets the gateway unreachable at the
    first AuthReq it builds, says so, and ends there; both stay purchased, and a round
    once it is back authorizes them.

    Before: the PCertReq's TransportError escaped ``resume`` (the worker logged it as an
    error, past the round's "gateway unreachable")."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-auth-round-not-built", AnswerMode.ORDER_RECEIVED, outage.target)
    try:
        merchant.authorizer.stop(timeout=10)  # the test runs the worker's round itself
        wallet = make_wallet(merchant)
        xids = [bytes.fromhex(buy(wallet, offer(merchant, 600)).xid) for _ in range(2)]
        _certificates_stale_from_now(merchant, monkeypatch)
        outage.stop()
        caplog.clear()
        assert merchant.authorizer.resume() == []
        assert any("gateway unreachable: 2 unanswered authorizations" in m for m in caplog.messages)
        built = [m for m in caplog.messages if "AuthReq not built now" in m]
        assert len(built) == 1, "the round went on past the gateway unreachable"
        assert [merchant.store.order(x).state for x in xids] == [OrderState.PURCHASED] * 2
        outage.end(merchant)
        ended = merchant.authorizer.resume()
        assert [o.state for o in ended] == [OrderState.AUTHORIZED] * 2
    finally:
        merchant.close()
        outage.release()
