"""The gateway certificates the merchant names in PInitRes: PCertReq at start and on expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clients.errors import ConfigError
from clients.merchant.gateway_client import GatewayKeys
from setcore.gateway_admin import GatewayCertificate
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from tests.clients.conftest import MerchantFactory


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fetched_once_then_again_after_the_ttl(make_merchant: MerchantFactory) -> None:
    merchant = make_merchant("m-pcert")
    calls: list[GatewayCertificate] = []

    def fetch() -> GatewayCertificate:
        calls.append(merchant.gateway.gateway_certificates("setpay"))
        return calls[-1]

    clock = Clock()
    keys = GatewayKeys(fetch, ttl=timedelta(minutes=10), clock=clock)
    first = keys.current()
    assert keys.current() is first and len(calls) == 1
    assert first.key_exchange is not None and first.signature is not None
    assert first.key_exchange.certificate_type == PAYMENT_GATEWAY
    assert first.key_exchange.usage is CertificateUsage.KEY_EXCHANGE
    assert first.chain  # the Payment Gateway CA, for the wallet to validate the key
    clock.now += 599
    keys.current()
    assert len(calls) == 1
    clock.now += 2
    again = keys.current()
    assert len(calls) == 2
    assert again.key_exchange is not None
    assert again.key_exchange.thumbprint == first.key_exchange.thumbprint
    assert keys.recipient().cert_thumb == first.key_exchange.thumbprint


def test_a_certificate_ending_within_the_ttl_is_asked_for_again(
    make_merchant: MerchantFactory,
) -> None:
    merchant = make_merchant("m-pcert-end")
    calls = []

    def fetch() -> GatewayCertificate:
        calls.append(1)
        return merchant.gateway.gateway_certificates("setpay")

    # Gateway certificates live a year: with a longer TTL each is always near its end.
    keys = GatewayKeys(fetch, ttl=timedelta(days=400), clock=Clock())
    keys.current()
    keys.current()
    assert len(calls) == 2


def test_a_brand_the_gateway_does_not_serve(make_merchant: MerchantFactory) -> None:
    merchant = make_merchant("m-pcert-brand")
    with pytest.raises(ConfigError, match="BRAND_NOT_SUPPORTED"):
        merchant.gateway.gateway_certificates("otherbrand")
