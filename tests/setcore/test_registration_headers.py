"""The plaintext header of registration messages (SET-PROTOCOL.md 3.1), on the CA's side
and the requester's, and the CAs' check of a request's language."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.pki.truststore import TrustStore
from setcore.purchase import header
from setcore.registration import REQUEST_PENDED
from setcore.registration_cardholder import (
    build_card_c_init_request,
    build_card_cert_inquiry,
    build_card_cert_request,
    build_reg_form_request,
    open_card_c_init_response,
    open_card_cert_response,
    open_reg_form_response,
)
from setcore.registration_cardholder_ca import (
    build_card_c_init_response,
    build_card_cert_response,
    build_reg_form_response,
    check_card_c_init_request,
    open_card_cert_request,
    open_reg_form_request,
)
from setcore.registration_certreq import CertAnswer, peek_cert_request, read_cert_inquiry
from setcore.registration_merchant import (
    MerchantIdentity,
    MerchantRequestState,
    build_me_aq_c_init_request,
    build_merchant_cert_inquiry,
    open_me_aq_c_init_response,
    open_merchant_cert_response,
)
from setcore.registration_merchant_ca import (
    build_me_aq_c_init_response,
    build_merchant_cert_response,
    check_me_aq_c_init_request,
    decryption_error_answer,
)
from setpay.v1 import common_pb2

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World
from .registration_support import (
    FORM,
    S,
    _ca,
    _contact,
    _form,
    _key,
    _merchant_cert_request,
    _revocation,
    refused,
    registration_world,
)


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


# --- the plaintext header of the CA's answers (SET-PROTOCOL.md 3.1) ---------------------


def _headers_are_compared(opens: Callable[[common_pb2.Header], object], rrpid: bytes) -> None:
    """An answer opens under the header the CA sends (its RRPID) and under one naming no
    ids; a header naming another RRPID, or any XID or LID (a registration has none), is
    refused with WRAPPER_MSG_MISMATCH."""
    opens(header(rrpid=rrpid))
    opens(header())
    for naming in (
        header(rrpid=new_id()),
        header(rrpid=rrpid, xid=new_id()),
        header(xid=new_id()),
        header(rrpid=rrpid, lid_c=b"lid-ee"),
        header(rrpid=rrpid, lid_m=b"lid-ee"),
    ):
        reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, opens, naming)
        assert "header" in reason


def test_card_c_init_res_header_names_the_signed_rrpid(world: World) -> None:
    trust = TrustStore(world.root.der)
    request, state = build_card_c_init_request("testbrand", b"lid-ee")
    body = build_card_c_init_response(_ca(world), request, b"lid-ca", revocation=_revocation(world))

    def opens(plain: common_pb2.Header) -> object:
        response = S.CardCInitResponse(header=plain, card_c_init_res=body)
        return open_card_c_init_response(response, state, trust)

    _headers_are_compared(opens, request.rrpid)


def test_reg_form_res_header_names_the_signed_rrpid(world: World) -> None:
    trust, contact = _contact(world)
    request, reg = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee")
    view = open_reg_form_request(request, _ca(world))
    body = build_reg_form_response(
        _ca(world), view.tbe, new_id(), FORM, revocation=_revocation(world)
    )

    def opens(plain: common_pb2.Header) -> object:
        return open_reg_form_response(
            S.RegFormResponse(header=plain, reg_form_res=body), reg, trust
        )

    _headers_are_compared(opens, request.header.rrpid)


def test_me_aq_c_init_res_header_names_the_signed_rrpid(world: World) -> None:
    request, state = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, MerchantIdentity("m-0001", "Corner Shop"),
        "testbrand", b"lid-m",
    )  # fmt: skip
    body = build_me_aq_c_init_response(
        _ca(world, "merchant"), request, b"lid-ca", new_id(), FORM, revocation=_revocation(world)
    )

    def opens(plain: common_pb2.Header) -> object:
        response = S.MeAqCInitResponse(header=plain, me_aq_c_init_res=body)
        return open_me_aq_c_init_response(response, state, TrustStore(world.root.der))

    _headers_are_compared(opens, request.rrpid)


def test_card_cert_res_and_cert_inq_res_headers_name_the_signed_rrpid(world: World) -> None:
    trust, reg, form = _form(world)
    request, state = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    data = open_card_cert_request(peek_cert_request(request), _ca(world)).data
    answer = CertAnswer(data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca)
    body = build_card_cert_response(
        _ca(world), data.back_key, answer, REQUEST_PENDED, revocation=_revocation(world)
    )

    def opens(plain: common_pb2.Header) -> object:
        outcome = open_card_cert_response(S.CertResponse(header=plain, cert_res=body), state, trust)
        assert outcome.status == REQUEST_PENDED
        return outcome

    _headers_are_compared(opens, request.header.rrpid)
    inquiry, inq_state = build_card_cert_inquiry(world.backend, state)
    tbs, _ = read_cert_inquiry(inquiry)
    inq_answer = CertAnswer(tbs.rrpid, tbs.lid_ee, tbs.chall_ee3, tbs.lid_ca)
    inq_body = build_card_cert_response(
        _ca(world), data.back_key, inq_answer, REQUEST_PENDED, revocation=_revocation(world)
    )

    def inquiry_opens(plain: common_pb2.Header) -> object:
        response = S.CertInqResponse(header=plain, cert_res=inq_body)
        return open_card_cert_response(response, inq_state, trust)

    _headers_are_compared(inquiry_opens, inquiry.header.rrpid)


def test_merchant_cert_res_and_cert_inq_res_headers_name_the_signed_rrpid(world: World) -> None:
    r = _merchant_cert_request(world)
    rrpid = r.answer.rrpid

    def answering(
        answer: CertAnswer, status: int, state: MerchantRequestState
    ) -> Callable[[common_pb2.Header], object]:
        body = build_merchant_cert_response(r.mca, answer, status, revocation=_revocation(world))

        def opens(plain: common_pb2.Header) -> object:
            outcome = open_merchant_cert_response(
                S.CertResponse(header=plain, cert_res=body), state, r.trust
            )
            assert outcome.status == status
            return outcome

        return opens

    _headers_are_compared(answering(r.answer, REQUEST_PENDED, r.state), rrpid)
    # A CertRes for a request the CA could not decrypt signs only the RRPID.
    _headers_are_compared(
        answering(decryption_error_answer(rrpid), S.CERT_STATUS_CODE_DECRYPTION_ERROR, r.state),
        rrpid,
    )
    inquiry, inq_state = build_merchant_cert_inquiry(world.backend, r.state)
    tbs, _ = read_cert_inquiry(inquiry)
    inq_answer = CertAnswer(tbs.rrpid, tbs.lid_ee, tbs.chall_ee3, tbs.lid_ca)
    body = build_merchant_cert_response(
        r.mca, inq_answer, REQUEST_PENDED, revocation=_revocation(world)
    )

    def inquiry_opens(plain: common_pb2.Header) -> object:
        response = S.CertInqResponse(header=plain, cert_res=body)
        return open_merchant_cert_response(response, inq_state, r.trust)

    _headers_are_compared(inquiry_opens, inquiry.header.rrpid)


def test_the_ca_compares_request_headers_the_same_way(world: World) -> None:
    # The CA's side of 3.1: a request's header may name its RRPID, nothing else.
    card_init, _ = build_card_c_init_request("testbrand", b"lid-ee")

    def card_init_opens(plain: common_pb2.Header) -> object:
        card_init.header.CopyFrom(plain)
        check_card_c_init_request(card_init)
        return card_init

    _headers_are_compared(card_init_opens, card_init.rrpid)
    identity = MerchantIdentity("m-0001", "Corner Shop")
    me_init, _ = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m"
    )

    def me_init_opens(plain: common_pb2.Header) -> object:
        me_init.header.CopyFrom(plain)
        check_me_aq_c_init_request(me_init)
        return me_init

    _headers_are_compared(me_init_opens, me_init.rrpid)
    _, contact = _contact(world)
    reg_form, _ = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee", thumbs=[b"\x01" * 32])
    rrpid = reg_form.header.rrpid

    def reg_form_opens(plain: common_pb2.Header) -> object:
        reg_form.header.CopyFrom(plain)
        return open_reg_form_request(reg_form, _ca(world))

    _headers_are_compared(reg_form_opens, rrpid)


@pytest.mark.parametrize("language", ["", "en\n", "en_GB", "e" * 36])
def test_the_cas_refuse_a_language_that_is_not_a_tag(world: World, language: str) -> None:
    # One rule for every message that names a language (setcore.language), PInitReq's too.
    identity = MerchantIdentity("m-0001", "Corner Shop")
    me_init, _ = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m", language=language
    )
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_me_aq_c_init_request, me_init)
    assert "Me-AqCInitReq language" in reason
    _, contact = _contact(world)
    reg_form, _ = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee", language=language)
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, open_reg_form_request, reg_form, _ca(world)
    )
    assert "RegFormReq language" in reason
