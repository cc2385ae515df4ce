"""Whose answers the merchant takes for its gateway's, and which gateway a wallet seals to.

SET-PROTOCOL.md 7.4: the merchant learns its gateway's certificates for its brand from
PCertRes, and accepts that gateway's answers only (``gateway_signers``). A PCertRes may
name the certificates of the gateway that signed it only. The end-to-end proof against
a running bank is ``tests/clients/merchant/test_gateway_brand.py``.
"""

from __future__ import annotations

import pytest

from hsm.base import KeyBackend, KeyUsage
from hsm.software import SoftwareBackend
from setcore.capture import build_capture_response, open_capture_request, open_capture_response
from setcore.credentials import Credentials
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.gateway_admin import (
    build_pcert_request,
    build_pcert_response,
    open_pcert_request,
    open_pcert_response,
)
from setcore.pki import CertificateUsage, issue_gateway
from setcore.pki.hierarchy import create_brand
from setcore.pki.issuance import kem_for
from setcore.profiles import EC
from setcore.purchase import build_pinit_request, build_pinit_response, open_pinit_response
from setpay.v1 import capture_pb2, common_pb2, gateway_admin_pb2

from .certified import Certified, certify, refused
from .test_capture import _decisions, _item, _request
from .test_purchase import _cardholder

P_SUCCESS = gateway_admin_pb2.P_CERT_CODE_SUCCESS


@pytest.fixture
def ec(backend: KeyBackend) -> Certified:
    return certify(backend, EC)


def _another_gateway(c: Certified, name: str = "gateway-2") -> Credentials:
    """A second gateway the brand's own Payment Gateway CA certified, with the first one's
    key-exchange certificate beside its signature certificate."""
    pca = c.world.brand.gateway_ca.ca
    key = c.world.key(KeyUsage.SIGNATURE)
    der = issue_gateway(pca, key.public_key, CertificateUsage.SIGNATURE, name)
    return Credentials(
        c.world.backend, key, der, (pca.der,), c.gateway.key_exchange_key,
        c.gateway.key_exchange_cert,
    )  # fmt: skip


def test_a_capture_answer_of_another_gateway_is_refused(ec: Certified) -> None:
    other = _another_gateway(ec)
    request, state = _request(ec, [_item(ec, 1000)])
    verified = open_capture_request(request, ec.gateway, ec.trust(), ec.token_key)
    response = capture_pb2.CaptureResponse(
        cap_res=build_capture_response(other, verified, _decisions(verified))
    )
    # Without a pin (tools, tests) any gateway of the brand is taken at its word.
    assert open_capture_response(response, ec.merchant, state, ec.trust()).items
    ours = {ec.gateway.signature_thumb}
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, open_capture_response, response, ec.merchant,
        state, ec.trust(), gateway_signers=ours,
    )  # fmt: skip
    assert "not one the merchant's PCertRes named" in reason


def test_a_pcertres_naming_another_gateways_certificate_is_refused(ec: Certified) -> None:
    """Signed by gateway-2, naming gateway-1's key-exchange certificate: the merchant would
    hand wallets one gateway's key and take another's answers."""
    other = _another_gateway(ec)
    request, state = build_pcert_request(ec.merchant, [(ec.brand_id, "411111")], ec.merchant_id)
    verified = open_pcert_request(request, ec.trust())
    payload = build_pcert_response(other, verified, [P_SUCCESS])
    response = gateway_admin_pb2.GatewayCertificatesResponse(p_cert_res=payload)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, open_pcert_response, response, ec.merchant,
        state, ec.trust(),
    )  # fmt: skip
    assert "certificates of another gateway" in reason


def test_a_wallet_refuses_a_gateway_of_another_brand(ec: Certified) -> None:
    """PEThumb naming a gateway key-exchange certificate under another brand's root (the
    same gateway name): refused (by the chain, which ends at the wallet's brand root)."""
    backend = SoftwareBackend.ephemeral()
    brand = create_brand(backend, EC, "otherbrand")
    pca = brand.gateway_ca.ca
    kex = backend.generate("other-kex", KeyUsage.KEY_EXCHANGE, EC.key_exchange_key)
    der = issue_gateway(
        pca, kex.public_key, CertificateUsage.KEY_EXCHANGE, "gateway-1", kem=kem_for(kex)
    )
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c")
    trans = common_pb2.TransIDs(lid_c=b"lid-c", lid_m=b"lid-m", xid=new_id())
    response = build_pinit_response(ec.merchant, request, trans, new_id(), der, (pca.der,))
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, open_pinit_response, response, state, ec.trust()
    )
