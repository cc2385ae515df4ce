"""Whose Error a requester takes as the CA's word: the CA of its registration's, and
before it knows one, a CA of the brand it asked for.

A second CA of the same type under the same brand root, listed in a newer BCI, answers
a request it never saw (a misrouted call, a requester whose CA target changed) with a
genuine signed Error naming the request's RRPID and digest. Taken as the CA's word, its
UNKNOWN_LID would make the wallet throw away a registration its own CA holds.
"""

from __future__ import annotations

import pytest

from hsm.base import KeyUsage
from setcore.credentials import Credentials
from setcore.error_message import build_error
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.pan import PAN
from setcore.pki import issue_brand_crl_identifier, issue_crl
from setcore.pki.issuance import IssuingCA, issue_ca_certificate
from setcore.pki.roles import CARDHOLDER_CA, MERCHANT_CA
from setcore.pki.truststore import TrustStore
from setcore.registration_cardholder import (
    build_card_c_init_request,
    build_card_cert_request,
    build_reg_form_request,
    open_card_c_init_response,
    open_card_cert_response,
    open_reg_form_response,
)
from setcore.registration_merchant import open_merchant_cert_response
from setpay.v1 import registration_pb2
from tests.setcore.pki.conftest import TEST_EXPIRY, TEST_PAN, World
from tests.setcore.registration_support import (
    _contact,
    _form,
    _key,
    _merchant_cert_request,
    registration_world,
)

S = registration_pb2
UNKNOWN_LID = ErrorCode.ERROR_CODE_UNKNOWN_LID
INVALID_CERTIFICATE = ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
NOT_OURS = "not by the CA of this registration"


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


def _second_ca(world: World, trust: TrustStore, ca_type: int, name: str) -> Credentials:
    """Another CA of ``ca_type`` under the brand root, in a BCI ``trust`` installs."""
    key = world.backend.generate(name.replace(" ", "-"), KeyUsage.CA_SIGNING, world.profile.ca_key)
    der = issue_ca_certificate(world.root, key.public_key, ca_type, common_name=name)
    other = IssuingCA(world.backend, key, der, world.root.chain)
    pairs = [(ca.der, issue_crl(ca, [], 2)) for ca in (world.root, *world.cas, other)]
    bci = issue_brand_crl_identifier(world.root, 2, pairs)
    trust.update_revocation(bci, [crl for _, crl in pairs])
    return Credentials(world.backend, key, der, ())


def _refused_as_not_ours(caught: pytest.ExceptionInfo[ProtocolError], name: str) -> None:
    assert caught.value.code == INVALID_CERTIFICATE, caught.value
    assert NOT_OURS in caught.value.reason and name in caught.value.reason


def test_a_cert_res_error_from_another_cardholder_ca_is_not_the_cas_word(world: World) -> None:
    trust, reg, form = _form(world)
    _, state = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    other = _second_ca(world, trust, CARDHOLDER_CA, "testbrand CCA2")
    ex = state.exchange
    error = build_error(other, UNKNOWN_LID, rrpid=ex.rrpid, request=ex.request_digest)
    with pytest.raises(ProtocolError) as caught:
        open_card_cert_response(S.CertResponse(error=error), state, trust)
    _refused_as_not_ours(caught, "testbrand CCA2")


def test_a_reg_form_error_from_another_cardholder_ca_is_not_the_cas_word(world: World) -> None:
    trust, contact = _contact(world)
    _, reg = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee")
    other = _second_ca(world, trust, CARDHOLDER_CA, "testbrand CCA3")
    error = build_error(other, UNKNOWN_LID, rrpid=reg.rrpid, request=reg.request_digest)
    with pytest.raises(ProtocolError) as caught:
        open_reg_form_response(S.RegFormResponse(error=error), reg, trust)
    _refused_as_not_ours(caught, "testbrand CCA3")


def test_a_cert_res_error_from_another_merchant_ca_is_not_the_cas_word(world: World) -> None:
    r = _merchant_cert_request(world)
    other = _second_ca(world, r.trust, MERCHANT_CA, "testbrand MCA2")
    ex = r.state.exchange
    error = build_error(other, UNKNOWN_LID, rrpid=ex.rrpid, request=ex.request_digest)
    with pytest.raises(ProtocolError) as caught:
        open_merchant_cert_response(S.CertResponse(error=error), r.state, r.trust)
    _refused_as_not_ours(caught, "testbrand MCA2")


def test_the_cas_own_error_is_still_its_word(world: World) -> None:
    r = _merchant_cert_request(world)
    ex = r.state.exchange
    error = build_error(r.mca, UNKNOWN_LID, rrpid=ex.rrpid, request=ex.request_digest)
    with pytest.raises(PeerError) as caught:
        open_merchant_cert_response(S.CertResponse(error=error), r.state, r.trust)
    assert caught.value.code == UNKNOWN_LID


def test_a_card_c_init_error_from_a_ca_of_another_brand_is_not_its_word(world: World) -> None:
    """No CA is known yet: the Error must come from a CA of the brand asked for."""
    trust = TrustStore(world.root.der)
    trust.update_revocation(world.bci, world.crls)
    _, state = build_card_c_init_request("otherbrand", b"lid-ee")
    cca = world.brand.cardholder_ca
    signer = Credentials(world.backend, cca.ca.key, cca.ca.der, ())
    error = build_error(signer, UNKNOWN_LID, rrpid=state.rrpid, request=state.request_digest)
    with pytest.raises(ProtocolError) as caught:
        open_card_c_init_response(S.CardCInitResponse(error=error), state, trust)
    assert caught.value.code == INVALID_CERTIFICATE
    assert "brand 'testbrand'" in caught.value.reason and NOT_OURS in caught.value.reason
