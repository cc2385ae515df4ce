"""What the registration tests share: a real brand tree's CAs and the steps that lead up
to the message under test.

A real brand tree (``tests.setcore.pki.conftest.make_world``) plays the CA; the tests
reach the checks a well-behaved CA never trips (a wrong echo, a certificate for another
key or account, a key-exchange certificate of another CA) by building the CA's answers
with the same setcore functions and one thing changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from hsm.base import KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.credentials import Credentials
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.pki.truststore import TrustStore
from setcore.profiles import EC
from setcore.registration import FormTemplate, RevocationData
from setcore.registration_cardholder import (
    build_card_c_init_request,
    build_reg_form_request,
    open_card_c_init_response,
    open_reg_form_response,
)
from setcore.registration_cardholder_ca import (
    build_card_c_init_response,
    build_reg_form_response,
    open_reg_form_request,
)
from setcore.registration_certreq import CertAnswer, OpenedCertRequest, peek_cert_request
from setcore.registration_merchant import (
    MerchantIdentity,
    MerchantRequestState,
    build_me_aq_c_init_request,
    build_merchant_cert_request,
    open_me_aq_c_init_response,
)
from setcore.registration_merchant_ca import build_me_aq_c_init_response, open_merchant_cert_request
from setpay.v1 import registration_pb2

from .pki.conftest import TEST_PAN, World, make_world
from .refusals import refused  # noqa: F401 - re-exported to the tests importing it from here

S = registration_pb2
FORM = FormTemplate("form-1", ("name",), "policy")


def registration_world() -> World:
    """The brand tree a registration test module runs on (its module-scoped ``world``): an
    EC tree, in a software backend of its own."""
    return make_world(SoftwareBackend.ephemeral(), EC)


def _ca(world: World, which: str = "cardholder") -> Credentials:
    sub = getattr(world.brand, f"{which}_ca")
    return Credentials(
        world.backend, sub.ca.key, sub.ca.der, (), sub.key_exchange_key, sub.key_exchange_der
    )


def _revocation(world: World) -> RevocationData:
    return RevocationData(world.bci, world.crls)


def _key(world: World, usage: KeyUsage = KeyUsage.SIGNATURE) -> KeyHandle:
    return world.key(usage)


def _contact(world: World, ca: Credentials | None = None):  # type: ignore[no-untyped-def]
    """CardCInit round trip; the wallet's trust store and the CaContact."""
    trust = TrustStore(world.root.der)
    request, state = build_card_c_init_request("testbrand", b"lid-ee")
    body = build_card_c_init_response(
        ca or _ca(world), request, b"lid-ca", revocation=_revocation(world)
    )
    contact = open_card_c_init_response(S.CardCInitResponse(card_c_init_res=body), state, trust)
    return trust, contact


def _form(  # type: ignore[no-untyped-def]
    world: World, request_type: int = S.REQUEST_TYPE_CARD_INITIAL_SIG
):
    trust, contact = _contact(world)
    request, reg = build_reg_form_request(
        contact, PAN(TEST_PAN), b"lid-ee", request_type=request_type
    )
    view = open_reg_form_request(request, _ca(world))
    assert view.pan == PAN(TEST_PAN)
    body = build_reg_form_response(
        _ca(world), view.tbe, new_id(), FORM, revocation=_revocation(world)
    )
    form = open_reg_form_response(S.RegFormResponse(reg_form_res=body), reg, trust)
    return trust, reg, form


@dataclass(frozen=True)
class _MerchantCertRequest:
    """Merchant "m-0001" registered up to its CertReq, as the Merchant CA opened it."""

    trust: TrustStore
    mca: Credentials
    sig: KeyHandle
    kex: KeyHandle
    state: MerchantRequestState
    answer: CertAnswer
    opened: OpenedCertRequest


def _merchant_cert_request(world: World, account: str | None = None) -> _MerchantCertRequest:
    trust = TrustStore(world.root.der)
    identity = MerchantIdentity("m-0001", "Corner Shop")
    request, state = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m"
    )
    mca = _ca(world, "merchant")
    body = build_me_aq_c_init_response(
        mca, request, b"lid-ca", new_id(), FORM, revocation=_revocation(world)
    )
    registration = open_me_aq_c_init_response(
        S.MeAqCInitResponse(me_aq_c_init_res=body), state, trust
    )
    sig, kex = _key(world), _key(world, KeyUsage.KEY_EXCHANGE)
    cert_request, cert_state = build_merchant_cert_request(
        world.backend, sig, kex, registration, state, account=account
    )
    opened = open_merchant_cert_request(peek_cert_request(cert_request), mca)
    data = opened.data
    answer = CertAnswer(data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca)
    return _MerchantCertRequest(trust, mca, sig, kex, cert_state, answer, opened)
