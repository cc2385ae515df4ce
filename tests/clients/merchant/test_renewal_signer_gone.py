"""An order whose PI names a signature certificate the merchant can no longer sign under
(its key deleted after ``merchant renew``): no AuthReq the gateway would take can be
built, so the worker's rounds must not try again and again. Against the real bank.

Before: ``_signing_as``'s refusal was taken as a failure to retry. An order with no
AuthReq yet logged the same ERROR at every round (every few seconds) for ever; one whose
stored AuthReq the gateway refused as too old sent those same bytes again at every round,
and the gateway signed a fresh refusal each time."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest

from clients.merchant.config import AnswerMode
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from gateway.bank import Bank
from gateway.servicer import PaymentGatewayServicer
from setcore.errors import ErrorCode
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import WELL_PAST_MS, GatewayOutage
from tests.clients.merchant.test_renewal_signer import (
    _forget_earlier_keys,
    _purchased_then_renewed,
    _renew,
)
from tests.clients.test_purchase_flow import buy, offer
from tests.clocks import clocks_moved

# The worker's rounds a test runs: more than one, so that a retry would show.
ROUNDS = 3
SAID = "cannot be authorized: the signature key whose certificate"


class CountingGateway(PaymentGatewayServicer):
    """The bank's real gateway, counting the AuthReqs that reach it."""

    def __init__(self, bank: Bank) -> None:
        super().__init__(bank)
        self.authorizations = 0

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.authorizations += 1
        return super().Authorize(request, context)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_order_with_no_authreq_whose_signer_is_gone_is_said_once_and_never_sent(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Purchased before the renewal, its AuthReq never built, the earlier key deleted:
    the first round ends it failed and says so once, by the order and the certificate;
    nothing reaches the gateway."""
    outage = GatewayOutage(bank)
    counting = CountingGateway(bank.bank)
    again, xid, old_thumb = _purchased_then_renewed(
        make_merchant, make_wallet, capsys, "m-gone-purchased", outage.target
    )
    try:
        outage.stop()
        outage.serve(counting)
        _forget_earlier_keys(again)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rounds = [again.authorizer.resume() for _ in range(ROUNDS)]
        assert [[order.xid for order in ended] for ended in rounds] == [[xid], [], []]
        errors = _errors(caplog)
        assert len(errors) == 1, errors
        short_id = again.store.order(xid).short_id
        assert short_id in errors[0] and f"{SAID} {old_thumb.hex()[:16]}" in errors[0]
        assert counting.authorizations == 0
        assert xid not in [order.xid for order in again.authorizer.pending()]
        left = again.store.order(xid)
        assert (left.state, left.error_code, left.auth_request) == (
            OrderState.FAILED, ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, None,
        )  # fmt: skip
    finally:
        again.close()
        outage.release()


def test_an_authreq_refused_as_too_old_whose_signer_is_gone_ends_failed_once(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An AuthReq stored in a gateway outage before the renewal, the earlier key deleted,
    the gateway back once it is too old: refused as such, it cannot be built afresh, so
    the order ends failed with the gateway's verified code, and later rounds send
    nothing."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-gone-too-old", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    again: Merchant | None = None
    try:
        wallet = make_wallet(merchant)
        outage.stop()
        xid = bytes.fromhex(buy(wallet, offer(merchant, 600)).xid)
        assert merchant.store.order(xid).state is OrderState.AUTHORIZING
        directory = merchant.config.base_dir
        merchant.close()
        _renew(directory, capsys)
        clocks_moved(monkeypatch, WELL_PAST_MS)
        counting = CountingGateway(bank.bank)
        outage.serve(counting)
        again = Merchant.open(load_merchant_config(directory))  # no worker: the test's rounds
        again.revocation.refresh()  # as ``serve`` does first: the refusal is checked with it
        _forget_earlier_keys(again)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            for _ in range(ROUNDS):
                again.authorizer.resume()
        done = again.store.order(xid)
        assert (done.state, done.error_code) == (
            OrderState.FAILED, ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD,
        )  # fmt: skip
        assert counting.authorizations == 1
        said = [m for m in _errors(caplog) if SAID in m]
        assert len(said) == 1, said
    finally:
        if again is not None:
            again.close()
        outage.release()
