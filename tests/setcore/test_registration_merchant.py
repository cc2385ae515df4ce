"""Merchant registration without a server: the merchant's checks of Me-AqCInitRes and
CertRes, and certificates that must name the merchant (``registration_support``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pki import CertificateUsage, MerchantData, issue_merchant, kem_for
from setcore.pki.truststore import TrustStore
from setcore.registration import REQUEST_COMPLETE
from setcore.registration_certreq import CertAnswer, CertStatusUnknown
from setcore.registration_merchant import (
    MerchantIdentity,
    build_me_aq_c_init_request,
    open_me_aq_c_init_response,
    open_merchant_cert_response,
)
from setcore.registration_merchant_ca import (
    build_me_aq_c_init_response,
    build_merchant_cert_response,
)

from .pki.conftest import World
from .registration_support import (
    FORM,
    S,
    _ca,
    _merchant_cert_request,
    _revocation,
    refused,
    registration_world,
)


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


def test_merchant_certificates_must_name_the_merchant(world: World) -> None:
    r = _merchant_cert_request(world)
    trust, mca, sig, kex, cert_state, answer = r.trust, r.mca, r.sig, r.kex, r.state, r.answer
    ca = world.brand.merchant_ca.ca

    def issued(merchant: MerchantData) -> S.CertResponse:
        certs = (
            issue_merchant(ca, sig.public_key, CertificateUsage.SIGNATURE, merchant),
            issue_merchant(
                ca, kex.public_key, CertificateUsage.KEY_EXCHANGE, merchant, kem=kem_for(kex)
            ),
        )
        body = build_merchant_cert_response(
            mca, answer, REQUEST_COMPLETE, revocation=_revocation(world), certificates=certs
        )
        return S.CertResponse(cert_res=body)

    good = open_merchant_cert_response(issued(MerchantData("m-0001", "Corner Shop", False)),
                                       cert_state, trust)  # fmt: skip
    assert good.complete
    refused(
        ErrorCode.ERROR_CODE_MERCHANT_MISMATCH,
        open_merchant_cert_response, issued(MerchantData("m-0002", "Other", False)),
        cert_state, trust,
    )  # fmt: skip


def test_me_aq_c_init_res_checks_the_echoes(world: World) -> None:
    identity = MerchantIdentity("m-0001", "Corner Shop")
    request, state = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m", thumbs=[b"\x01" * 32]
    )
    mca = _ca(world, "merchant")
    for change, chall_ca, code in (
        (lambda r: setattr(r, "chall_ee", new_id()), new_id(),
         ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        (lambda r: setattr(r, "rrpid", new_id()), new_id(), ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        (lambda r: setattr(r, "lid_ee", b"other"), new_id(), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (lambda r: r.thumbs.thumbs.append(b"\x02" * 32), new_id(),
         ErrorCode.ERROR_CODE_THUMBS_MISMATCH),
        (lambda r: setattr(r, "request_type", S.REQUEST_TYPE_MER_RENEWAL_BOTH), new_id(),
         ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
        (lambda r: None, b"", ErrorCode.ERROR_CODE_DECODING_FAILURE),  # no Chall-CA
    ):  # fmt: skip
        changed = S.MeAqCInitRequest()
        changed.CopyFrom(request)
        change(changed)
        body = build_me_aq_c_init_response(
            mca, changed, b"lid-ca", chall_ca, FORM, revocation=_revocation(world)
        )
        response = S.MeAqCInitResponse(me_aq_c_init_res=body)
        refused(code, open_me_aq_c_init_response, response, state, TrustStore(world.root.der))
    body = build_me_aq_c_init_response(
        mca, request, b"lid-ca", new_id(), FORM, revocation=_revocation(world)
    )
    response = S.MeAqCInitResponse(me_aq_c_init_res=body)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, open_me_aq_c_init_response, response,
        replace(state, brand_id="otherbrand"), TrustStore(world.root.der),
    )  # fmt: skip
    assert reason == "CA of another brand"


def test_cert_res_checks_the_echoes_and_the_status(world: World) -> None:
    r = _merchant_cert_request(world)
    trust, mca, sig, cert_state, answer = r.trust, r.mca, r.sig, r.state, r.answer

    def answered(changed: CertAnswer, status: int = S.CERT_STATUS_CODE_REJECTED_BY_AGENT,
                 certificates: tuple[bytes, ...] = ()) -> S.CertResponse:  # fmt: skip
        body = build_merchant_cert_response(
            mca, changed, status, revocation=_revocation(world), certificates=certificates
        )
        return S.CertResponse(cert_res=body)

    assert open_merchant_cert_response(answered(answer), cert_state, trust).status == (
        S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    )
    for changed, code in (
        (replace(answer, rrpid=new_id()), ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        (replace(answer, chall_ee3=new_id()), ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        (replace(answer, lid_ee=b"other"), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (replace(answer, lid_ca=b"other"), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (replace(answer, thumbs=(b"\x02" * 32,)), ErrorCode.ERROR_CODE_THUMBS_MISMATCH),
    ):
        refused(code, open_merchant_cert_response, answered(changed), cert_state, trust)
    # A status of a later release: neither pended nor refused (``test_registration_cert_status``).
    with pytest.raises(CertStatusUnknown):
        open_merchant_cert_response(answered(answer, status=99), cert_state, trust)
    # "Complete" with only the signature certificate: both are expected.
    ca = world.brand.merchant_ca.ca
    merchant = MerchantData("m-0001", "Corner Shop", False)
    only_sig = issue_merchant(ca, sig.public_key, CertificateUsage.SIGNATURE, merchant)
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, open_merchant_cert_response,
        answered(answer, REQUEST_COMPLETE, (only_sig,)), cert_state, trust,
    )  # fmt: skip
    assert reason == "two certificates expected"
