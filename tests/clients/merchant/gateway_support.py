"""Another gateway of the merchant's brand: a signature certificate the bank's own
Payment Gateway CA issues under another name, and PCertReq answered in its name."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from clients.transport import Caller
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.software import SoftwareBackend
from setcore.credentials import Credentials
from setcore.gateway_admin import SUCCESS, build_pcert_response, open_pcert_request
from setcore.pki import CertificateUsage, issue_gateway
from setcore.pki.issuance import IssuingCA, kem_for
from setpay.v1 import gateway_admin_pb2
from tests.clients.bank_support import RunningBank

# The other gateway's name (its certificates' CommonName).
OTHER_GATEWAY = "another-gateway"


def gateway_signing(ca: IssuingCA, name: str) -> Credentials:
    """A gateway signature certificate ``ca`` issues to ``name``, with its key."""
    backend = SoftwareBackend.ephemeral()
    key = backend.generate(name, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    der = issue_gateway(ca, key.public_key, CertificateUsage.SIGNATURE, name)
    return Credentials(backend, key, der, (ca.der,))


def _bank_gateway_ca(bank: RunningBank) -> IssuingCA:
    pca = bank.pki.pca
    return IssuingCA(bank.pki.backend, pca.signature_key, pca.signature_cert, (bank.pki.root_der,))


def other_gateway(bank: RunningBank) -> Credentials:
    """Another gateway, certified by the bank's own Payment Gateway CA (same brand root)."""
    return gateway_signing(_bank_gateway_ca(bank), OTHER_GATEWAY)


def answering_pcertreq(bank: RunningBank, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on PCertReq is answered by another gateway the bank's own Payment Gateway
    CA certified, naming its own certificates: a PCertRes that verifies."""
    signing = other_gateway(bank)
    template = bank.pki.gateway.key_exchange_key
    assert template is not None
    kex = signing.backend.generate(
        f"{OTHER_GATEWAY}-kex", KeyUsage.KEY_EXCHANGE, template.algorithm
    )
    kex_der = issue_gateway(
        _bank_gateway_ca(bank), kex.public_key, CertificateUsage.KEY_EXCHANGE, OTHER_GATEWAY,
        kem=kem_for(kex),
    )  # fmt: skip
    other = replace(signing, key_exchange_key=kex, key_exchange_cert=kex_der)
    real = Caller.call

    def call(caller: Caller, method: str, request: bytes, response_cls: Any, **kw: Any) -> Any:
        response = real(caller, method, request, response_cls, **kw)
        if method.endswith("/GatewayCertificates"):
            asked = gateway_admin_pb2.GatewayCertificatesRequest.FromString(request)
            verified = open_pcert_request(asked, bank.pki.trust)
            response.p_cert_res = build_pcert_response(other, verified, [SUCCESS])
        return response

    monkeypatch.setattr(Caller, "call", call)
