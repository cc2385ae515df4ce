"""The merchant accepts answers from its own gateway only (SET-PROTOCOL.md 2.2, 7.4).

The merchant picks its gateway per brand and learns, from PCertRes, that gateway's
key-exchange certificate (it seals to) and signature certificate, whose subject name is
the gateway's identity. An answer signed by a certificate of another name, even one the
same brand's Payment Gateway CA issued, is not its gateway's word. Here a second gateway
signature certificate is issued by the running bank's real Payment Gateway CA under
another name, and the gateway's true answer is re-signed with it on its way to the
merchant (``tampering_support``): someone between the two, or another gateway of the
brand, answering in its name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clients.merchant.runtime import Merchant
from hsm.software import SoftwareBackend
from setcore.authorization import AUTH_RES_CT, AuthRequestState
from setcore.credentials import Credentials
from setcore.envelope import Recipient, open_sealed
from setcore.error_message import build_error
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.link import link_content_type, seal_signed
from setcore.pki.certificate import common_name_of, load_certificate
from setcore.pki.hierarchy import create_brand
from setcore.profiles import EC
from setcore.signed import parse_signed
from setpay.v1 import crypto_pb2
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.gateway_support import (
    answering_pcertreq,
    gateway_signing,
    other_gateway,
)
from tests.clients.merchant.tampering_support import Exchange, TamperingGateway
from tests.clients.test_purchase_flow import buy, offer

Tamper = Callable[[Any, Exchange, TamperingGateway], None]


def _resigned_by(signer: Credentials, merchant: Merchant) -> Tamper:
    """The gateway's true AuthRes, signed by ``signer`` instead and sealed to the merchant."""
    kex_key, kex_thumb = merchant.credentials.require_key_exchange()
    assert kex_key.kem is not None
    to_merchant = Recipient(kex_key.public_key, kex_thumb, kex_key.kem)
    content_type = link_content_type(AUTH_RES_CT)

    def tamper(response: Any, exchange: Exchange, gateway: TamperingGateway) -> None:
        envelope = crypto_pb2.SealedWithBaggage.FromString(response.auth_res)
        sealed = envelope.sealed
        opened = open_sealed(sealed, merchant.credentials.backend, kex_key, kex_thumb, content_type)
        true = parse_signed(opened.plaintext)
        forged = seal_signed(
            signer.backend, signer.signature_key, signer.signature_thumb, content_type,
            true.tbs, to_merchant, xid=sealed.xid, rrpid=sealed.rrpid, bundle=signer.bundle(),
        )  # fmt: skip
        envelope.sealed.CopyFrom(forged)
        response.auth_res = envelope.SerializeToString()

    return tamper


def _error_signed_by(signer: Credentials) -> Tamper:
    """In place of the answer, a SET Error for our request, signed by ``signer``."""

    def tamper(response: Any, exchange: Exchange, gateway: TamperingGateway) -> None:
        code = ErrorCode.ERROR_CODE_DECODING_FAILURE
        response.error.CopyFrom(build_error(signer, code, rrpid=exchange.rrpid))

    return tamper


def _authorized(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, merchant_id: str
) -> tuple[Merchant, bytes, AuthRequestState]:
    """A merchant with one authorized order: its AuthReq bytes and state, to send again."""
    merchant = make_merchant(merchant_id)
    merchant.authorizer.stop(timeout=10)  # its scans would race the test for the order
    record = buy(make_wallet(merchant), offer(merchant, 700))
    assert record.auth_code == "AUTH_CODE_APPROVED"
    order = merchant.store.order(bytes.fromhex(record.xid))
    assert order.auth_request is not None and order.auth_rrpid is not None
    assert order.auth_request_digest is not None
    state = AuthRequestState(order.auth_rrpid, order.xid, order.auth_request_digest)
    return merchant, order.auth_request, state


def test_answers_are_accepted_from_the_gateway_pcertres_named(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant, request, state = _authorized(make_merchant, make_wallet, "m-own-gateway")
    identity = merchant.gateway.gateway_identity()
    assert identity.subject == load_certificate(bank.pki.gateway.signature_cert).subject
    result = merchant.gateway.authorize(request, state)  # the same bytes: the stored answer
    assert result.gateway.thumbprint == bank.pki.gateway.signature_thumb


def test_an_answer_signed_by_another_gateway_of_the_brand_is_refused(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: accepted as the gateway's AuthRes (``result.gateway`` the other one)."""
    other = other_gateway(bank)
    merchant, request, state = _authorized(make_merchant, make_wallet, "m-other-gateway")
    gateway = TamperingGateway(monkeypatch, bank)
    gateway.tamper("Authorize", _resigned_by(other, merchant))
    with pytest.raises(ProtocolError) as caught:
        merchant.gateway.authorize(request, state)
    assert caught.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
    assert "the gateway the merchant's PCertRes named" in caught.value.reason
    assert "'CN=another-gateway," in caught.value.reason
    assert other.signature_thumb.hex()[:16] in caught.value.reason


def test_an_error_signed_by_another_gateway_of_the_brand_is_not_a_refusal(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: a PeerError, the merchant taking it as its gateway's refusal."""
    other = other_gateway(bank)
    merchant, request, state = _authorized(make_merchant, make_wallet, "m-other-error")
    gateway = TamperingGateway(monkeypatch, bank)
    gateway.tamper("Authorize", _error_signed_by(other))
    with pytest.raises(ProtocolError) as caught:
        merchant.gateway.authorize(request, state)
    assert not isinstance(caught.value, PeerError)
    assert "the gateway the merchant's PCertRes named" in caught.value.reason


def test_an_answer_signed_by_a_gateway_of_another_brand_is_refused(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same CommonName as the bank's gateway, another brand root: refused by the chain,
    which ends at the merchant's own brand root only, before any name is compared."""
    brand = create_brand(SoftwareBackend.ephemeral(), EC, "otherbrand")
    name = common_name_of(load_certificate(bank.pki.gateway.signature_cert))
    other = gateway_signing(brand.gateway_ca.ca, name)
    merchant, request, state = _authorized(make_merchant, make_wallet, "m-other-brand")
    gateway = TamperingGateway(monkeypatch, bank)
    gateway.tamper("Authorize", _resigned_by(other, merchant))
    with pytest.raises(ProtocolError) as caught:
        merchant.gateway.authorize(request, state)
    assert caught.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE


def test_a_later_pcertres_naming_another_gateway_is_refused(
    bank: RunningBank, make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merchant's first PCertRes decides its gateway: a later one naming another keeps
    that gateway's key-exchange certificate from wallets and its answers from counting."""
    merchant = make_merchant("m-later-pcertres")
    ours = merchant.gateway.gateway_identity()
    answering_pcertreq(bank, monkeypatch)
    with pytest.raises(ProtocolError) as caught:
        merchant.gateway.gateway_certificates(merchant.config.brand_id)
    assert caught.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
    assert "PCertRes names gateway 'CN=another-gateway," in caught.value.reason
    assert f"not {ours}" in caught.value.reason
    assert merchant.gateway.gateway_identity() == ours
