"""An order whose row lacks what its state says it holds (a hand edit, a damaged file) is
refused with ``StoreError`` naming it, and nothing goes to the gateway: the checks are
explicit, so they hold under ``python -O`` as well. The same for the gateway's
certificates and the server's TLS files, which are refused with ``ConfigError``."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from clients.errors import ConfigError, StoreError
from clients.merchant.config import AnswerMode
from clients.merchant.config import load as load_merchant_config
from clients.merchant.gateway_client import GatewayKeys
from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from setcore.gateway_admin import GatewayCertificate
from setpay.v1 import authorization_pb2, gateway_admin_pb2
from tests.clients.bank_support import RunningBank, configure_merchant, register_merchant
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.store_support import EUR, damage, purchased

DAMAGED = "StoreError: merchant database damaged: order "


def _quiet(merchant: Merchant, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stop the merchant's own retries, and note every call that would reach the gateway."""
    merchant.authorizer.stop(timeout=10)
    calls: list[str] = []

    def sent(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} reached the gateway")

        return call

    for name in ("authorize", "capture"):
        monkeypatch.setattr(merchant.gateway, name, sent(name))
    return calls


def _authorized_without_rrpid(merchant: Merchant, xid: bytes) -> None:
    """The purchased order made authorized by hand, as if approved, with no AuthReq."""
    damage(
        merchant.config.store,
        f"UPDATE orders SET state = 'authorized', "
        f"auth_code = {authorization_pb2.AUTH_CODE_APPROVED}, auth_amount = {EUR.minor}, "
        f"cap_token = x'00' WHERE xid = x'{xid.hex()}'",
    )


def test_an_authorizing_order_without_its_authreq_sends_nothing(
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-damaged-authorizing")
    calls = _quiet(merchant, monkeypatch)
    xid = purchased(merchant.store)
    damage(merchant.config.store, "UPDATE orders SET state = 'authorizing'")
    caplog.set_level(logging.WARNING, logger="setpay.merchant")
    assert merchant.authorizer.resume() == []
    assert calls == []
    expected = f"{DAMAGED}{xid.hex()[:8]} is authorizing without its AuthReq"
    assert any(expected in message for message in caplog.messages), caplog.messages
    assert merchant.store.order(xid).state is OrderState.AUTHORIZING  # outcome unknown


def test_a_purchased_order_without_its_pi_is_not_built_on(
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-damaged-purchased")
    calls = _quiet(merchant, monkeypatch)
    xid = purchased(merchant.store)
    damage(merchant.config.store, "UPDATE orders SET pi = NULL")
    caplog.set_level(logging.WARNING, logger="setpay.merchant")
    assert merchant.authorizer.authorize(xid).state is OrderState.PURCHASED
    assert calls == []
    expected = f"{DAMAGED}{xid.hex()[:8]} is purchased without the OIData and PI"
    assert any(expected in message for message in caplog.messages), caplog.messages


def test_a_capture_on_an_order_without_its_auth_rrpid_is_refused(
    make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-damaged-capture")
    calls = _quiet(merchant, monkeypatch)
    xid = purchased(merchant.store)
    _authorized_without_rrpid(merchant, xid)
    with pytest.raises(StoreError, match="is authorized without the RRPID of its AuthReq"):
        merchant.settlement.capture(xid)
    assert calls == []
    assert merchant.store.operations(xid) == []


def test_a_sent_capture_on_an_order_without_its_auth_rrpid_stays_sent(
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-damaged-sent")
    calls = _quiet(merchant, monkeypatch)
    xid = purchased(merchant.store)
    _authorized_without_rrpid(merchant, xid)
    damage(
        merchant.config.store,
        "INSERT INTO operations (rrpid, xid, kind, currency, amount, exp10, state, request,"
        f" request_digest, created_ms, updated_ms) VALUES (x'{'ab' * 32}', x'{xid.hex()}',"
        f" 'capture', {EUR.currency}, {EUR.minor}, {EUR.exp10}, 'sent', x'00', x'00', 0, 0)",
    )
    caplog.set_level(logging.WARNING, logger="setpay.merchant")
    assert merchant.settlement.resume() == []
    assert calls == []
    expected = f"{DAMAGED}{xid.hex()[:8]} is authorized without the RRPID of its AuthReq"
    assert any(expected in message for message in caplog.messages), caplog.messages


def test_gateway_keys_refuse_an_answer_that_serves_no_certificate() -> None:
    refused = GatewayCertificate(
        "setpay", "", gateway_admin_pb2.P_CERT_CODE_BRAND_NOT_SUPPORTED, None, None, ()
    )
    keys = GatewayKeys(lambda: refused)
    with pytest.raises(ConfigError, match="serves no certificate for brand setpay"):
        keys.current()
    with pytest.raises(ConfigError, match="BRAND_NOT_SUPPORTED"):
        keys.recipient()


def test_serving_without_tls_files_is_a_configuration_error(
    bank: RunningBank, tmp_path: Path
) -> None:
    directory = tmp_path / "m-no-tls"
    configure_merchant(bank, directory, "m-no-tls", AnswerMode.AFTER_AUTHORIZATION)
    register_merchant(directory)
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        # Refused by the configuration loader; built otherwise, it is refused at serving.
        server = replace(merchant.config.server, insecure=False, tls_cert=None, tls_key=None)
        merchant.config = replace(merchant.config, server=server)
        with pytest.raises(ConfigError, match="are required unless insecure"):
            merchant.serve()
    finally:
        merchant.close()
