"""The gateway's checks that the PI and the AuthReq agree on who pays and who is paid
(SET-PROTOCOL.md 6.2, 9.3): each refuses for its own reason, and only that one.

``check_agreement`` compares what the cardholder signed with what the merchant asks;
``open_payment_instruction`` checks whose certificate signed the PI. Two of the checks
below (a certificate without a blinded account, another brand) never trip through one
trust store: the chain refuses such a certificate first, and every certificate it
verifies has its root's brand. They are kept as a second line; the tests reach them
with the verified certificate changed after the chain check, and show the first line
with real certificates.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import pytest

from hsm.base import KeyUsage
from setcore.authorization import build_auth_request, check_agreement, open_payment_instruction
from setcore.credentials import Credentials
from setcore.dualsig import MerchantView
from setcore.errors import ErrorCode
from setcore.pki import issuance, roles
from setcore.pki.issuance import card_expiry_end
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.purchase import open_purchase_request
from setpay.v1 import authorization_pb2, purchase_pb2

from .certified import MERCHANT, Certified, _merchant, refused
from .test_authorization import Bought, _auth_req, _bought, _open, ec  # noqa: F401
from .test_purchase import EXPIRY, Shop, _preq

MISMATCH = ErrorCode.ERROR_CODE_MERCHANT_MISMATCH
INVALID = ErrorCode.ERROR_CODE_INVALID_CERTIFICATE


def _agreement(c: Certified, request: authorization_pb2.AuthorizeRequest) -> None:
    """The gateway's steps 1 to 3 on ``request``: open it, open its PI, compare the two."""
    opened = _open(c, request)
    check_agreement(opened, open_payment_instruction(opened, c.gateway, c.trust()))


def _request_signed_by(bought: Bought, merchant: Credentials) -> authorization_pb2.AuthorizeRequest:
    shop, view = bought.shop, bought.view
    request, _ = build_auth_request(
        merchant, shop.c.gateway_kex, view.pi_bytes, shop.order.trans_ids, view.oi_bytes,
        shop.order.description, shop.order.amount, view.oi_data.od_salt, shop.order.amount,
        shop.c.merchant_id,
    )  # fmt: skip
    return request


def test_an_authorization_asked_with_another_certificate_of_the_same_merchant_is_refused(
    ec: Certified,  # noqa: F811
) -> None:
    # The PI names the certificate the cardholder was offered; the AuthReq is signed by
    # another one with the same merchant id. Only the thumbprint tells them apart.
    twin = _merchant(ec.world, MERCHANT)
    assert twin.signature_thumb != ec.merchant.signature_thumb
    request = _request_signed_by(_bought(ec), twin)
    assert _open(ec, request).merchant_id == ec.merchant_id
    reason = refused(MISMATCH, _agreement, ec, request)
    assert reason == "PI names another merchant"


def test_a_card_of_another_brand_than_the_merchants_is_refused(ec: Certified) -> None:  # noqa: F811
    opened = _open(ec, _auth_req(_bought(ec)))
    pi = open_payment_instruction(opened, ec.gateway, ec.trust())
    other = dataclasses.replace(pi.cardholder, brand_id=f"not-{pi.cardholder.brand_id}")
    reason = refused(INVALID, check_agreement, opened, dataclasses.replace(pi, cardholder=other))
    assert reason == "card and merchant brands differ"


def _resolving_without_account(trust: TrustStore, monkeypatch: pytest.MonkeyPatch) -> TrustStore:
    """``trust``, whose verified certificates come back without their blinded account."""
    real = trust.resolve

    def resolve(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(real(*args, **kwargs), blinded_account=None)

    monkeypatch.setattr(trust, "resolve", resolve)
    return trust


def test_a_cardholder_certificate_without_an_account_is_refused_by_the_gateway(
    ec: Certified,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = _open(ec, _auth_req(_bought(ec)))
    trust = _resolving_without_account(ec.trust(), monkeypatch)
    reason = refused(INVALID, open_payment_instruction, opened, ec.gateway, trust)
    assert reason == "no account in the certificate"


def _cardholder_without_account(c: Certified, shop: Shop) -> Shop:
    """``shop`` with a cardholder whose certificate carries no blinded account."""
    key = c.world.key(KeyUsage.SIGNATURE)
    cca = c.world.brand.cardholder_ca.ca
    window = (issuance.utc(None) - issuance.CLOCK_SKEW, card_expiry_end(EXPIRY))
    # issue_cardholder always writes the account; the CA's own certificate maker does not.
    der = issuance._end_entity(
        cca, key.public_key, roles.CARDHOLDER, CertificateUsage.SIGNATURE,
        secrets.token_hex(8), None, window,
    )  # fmt: skip
    holder = Credentials(c.world.backend, key, der, (cca.der,))
    return dataclasses.replace(shop, cardholder=holder)


def test_a_cardholder_certificate_without_an_account_is_refused_by_its_chain(
    ec: Certified,  # noqa: F811
) -> None:
    bought = _bought(ec)
    shop = _cardholder_without_account(ec, bought.shop)
    opened = _open(ec, _auth_req(dataclasses.replace(bought, shop=shop, view=_view_of(shop))))
    reason = refused(INVALID, open_payment_instruction, opened, ec.gateway, ec.trust())
    assert reason == "cardholder certificate without a blinded account id"


def test_a_pi_signed_by_a_merchant_certificate_is_refused(ec: Certified) -> None:  # noqa: F811
    # The other merchant plays the cardholder: its PI's dual signature verifies, under a
    # certificate that is no cardholder's.
    bought = _bought(ec)
    shop = dataclasses.replace(bought.shop, cardholder=ec.other_merchant)
    opened = _open(ec, _auth_req(dataclasses.replace(bought, shop=shop, view=_view_of(shop))))
    code = ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE
    reason = refused(code, open_payment_instruction, opened, ec.gateway, ec.trust())
    assert reason == "CERTIFICATE_TYPE_MERCHANT where CERTIFICATE_TYPE_CARDHOLDER is required"


def _view_of(shop: Shop) -> MerchantView:
    """The merchant's view of the PReq ``shop``'s cardholder signs (parsed, not verified)."""
    return open_purchase_request(purchase_pb2.PurchaseRequest.FromString(_preq(shop)))
