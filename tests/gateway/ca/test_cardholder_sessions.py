"""Cardholder sessions, retries and pended requests: CardCInit and RegForm on a session,
RRPIDs answered once, CertInq, and a person's decision on a pended request."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from hsm.base import KeyUsage
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import new_id
from setcore.pan import PAN, blinded_account
from setcore.pki.issuance import card_expiry_end
from setcore.registration import ca_error
from setcore.registration_cardholder import (
    RegFormState,
    build_card_cert_inquiry,
    open_card_cert_response,
)
from setpay.v1 import registration_pb2

from .conftest import CARD, EXPIRY, REVIEW_CARD, UNKNOWN_CARD, Bank
from .flows import (
    CARD_INITIAL,
    CARD_RENEWAL,
    REQUESTERS,
    CardSession,
    card_request,
    new_key,
    purge_answers,
    register_cardholder,
    sent_digest,
    start_cardholder,
)

S = registration_pb2


def test_card_c_init_for_another_brand_is_not_served(ec_bank: Bank) -> None:
    from setcore.registration_cardholder import build_card_c_init_request

    from .flows import new_trust

    request, _ = build_card_c_init_request("another-brand", b"lid-ee")
    response = ec_bank.stub.CardCInit(request)
    assert response.WhichOneof("result") == "error"
    trust = new_trust(ec_bank)
    error = ca_error(
        response.error, trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.rrpid,
        request=sent_digest(request),
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED


def test_card_c_init_retry_and_rrpid_reuse(ec_bank: Bank) -> None:
    from setcore.registration_cardholder import build_card_c_init_request

    from .flows import new_trust

    request, _ = build_card_c_init_request(ec_bank.brand_id, b"lid-ee")
    first = ec_bank.stub.CardCInit(request)
    assert ec_bank.stub.CardCInit(request).card_c_init_res == first.card_c_init_res
    request.chall_ee = new_id()  # same RRPID, another request
    response = ec_bank.stub.CardCInit(request)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, new_trust(ec_bank), S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.rrpid,
        request=sent_digest(request),
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_RRPID_REUSED


def test_reg_form_for_an_unknown_session(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    from setcore.registration import CaContact
    from setcore.registration_cardholder import (
        build_reg_form_request,
        open_reg_form_response,
    )

    ca = session.registration.ca
    stranger = CaContact(ca.signer, ca.key_exchange, new_id()[:16])
    request, state = build_reg_form_request(stranger, PAN(CARD), session.lid_ee)
    with pytest.raises(PeerError) as caught:
        open_reg_form_response(ec_bank.stub.RegForm(request), state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def _reg_form_again(
    bank: Bank, session: CardSession, request_type: int = CARD_INITIAL
) -> tuple[S.RegFormResponse, RegFormState]:
    """A RegFormReq on the session's LIDs, as anyone who saw them could send it."""
    from setcore.registration_cardholder import build_reg_form_request

    request, state = build_reg_form_request(
        session.registration.ca, PAN(UNKNOWN_CARD), session.lid_ee, request_type=request_type
    )
    response: S.RegFormResponse = bank.stub.RegForm(request)
    return response, state


def test_reg_form_on_a_decided_registration_is_refused_and_changes_nothing(
    ec_bank: Bank,
) -> None:
    """A RegFormReq after a CertReq used the session's Chall-CA is a SET Error (UNKNOWN_LID).

    The registration is over: issuing a fresh Chall-CA would re-open it for another
    CertReq (SET-PROTOCOL.md 4.3 rule 3: Chall-CA answers the one request it was issued for).
    """

    outcome, _, _, session = register_cardholder(ec_bank, CARD, EXPIRY)
    assert outcome.complete
    response, state = _reg_form_again(ec_bank, session)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, state.rrpid,
        request=state.request_digest,
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    # The used challenge was not reset: it still answers no further request.
    again, *_ = register_cardholder(ec_bank, CARD, EXPIRY, session=session)
    assert again.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH


def test_reg_form_again_does_not_spoil_the_pending_cert_request(ec_bank: Bank) -> None:
    """A second RegFormReq before any CertReq gets the same Chall-CA, not a fresh one.

    CardCInitReq and -Res travel in the clear, so anyone can learn the LIDs and ask for the
    form again. Replacing Chall-CA would make the wallet's CertReq fail CHALLENGE_MISMATCH;
    repeating it tells nobody anything new (RegFormRes is signed, not encrypted). A second
    RegFormReq for another request type is refused (UNKNOWN_LID) rather than re-binding it.
    """
    from setcore.registration_cardholder import open_reg_form_response

    session = start_cardholder(ec_bank, CARD)
    stranger, stranger_state = _reg_form_again(ec_bank, session)
    form = open_reg_form_response(stranger, stranger_state, session.trust)
    assert form.chall_ca == session.form.chall_ca
    other_type, other_state = _reg_form_again(ec_bank, session, CARD_RENEWAL)
    assert other_type.WhichOneof("result") == "error"
    error = ca_error(
        other_type.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, other_state.rrpid,
        request=other_state.request_digest,
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    # The wallet's CertReq, built from its own RegFormRes, still spends its challenge.
    outcome, *_ = register_cardholder(ec_bank, CARD, EXPIRY, session=session)
    assert outcome.complete


def test_retry_gets_the_same_bytes_and_a_changed_request_is_refused(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, key, CARD, EXPIRY)
    first = ec_bank.stub.Cert(request)
    again = ec_bank.stub.Cert(request)
    assert again.cert_res == first.cert_res
    assert open_card_cert_response(again, state, session.trust).complete
    # Same RRPID, other bytes (a new key, fresh secrets): refused, not re-processed.
    changed, changed_state = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY, rrpid=state.exchange.rrpid
    )
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(ec_bank.stub.Cert(changed), changed_state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_RRPID_REUSED


def test_the_rrpid_of_a_decided_request_whose_answer_was_purged_is_refused(
    ec_bank: Bank, caplog: pytest.LogCaptureFixture
) -> None:
    """A week on, the answer is gone but the decision is kept: a new request under its
    RRPID is RRPID_REUSED, a refusal like any other, not an outage of ca.db."""
    first, state, _, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert first.complete
    purge_answers(ec_bank)
    session = start_cardholder(ec_bank, CARD)
    request, again = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY, rrpid=state.exchange.rrpid
    )
    with caplog.at_level(logging.INFO), pytest.raises(PeerError) as caught:
        open_card_cert_response(ec_bank.stub.Cert(request), again, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_RRPID_REUSED
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    # The session it came with is as it was: the wallet registers under a fresh RRPID.
    request, fresh = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)
    assert open_card_cert_response(ec_bank.stub.Cert(request), fresh, session.trust).complete


def test_pended_request_then_cert_inquiry(ec_bank: Bank) -> None:
    outcome, state, _, session = register_cardholder(ec_bank, REVIEW_CARD, EXPIRY)
    assert outcome.status == S.CERT_STATUS_CODE_REQUEST_PENDED
    inquiry, inquiry_state = build_card_cert_inquiry(REQUESTERS, state)
    still = open_card_cert_response(ec_bank.stub.CertInq(inquiry), inquiry_state, session.trust)
    assert still.status == S.CERT_STATUS_CODE_REQUEST_PENDED
    ex = state.exchange
    assert ec_bank.ca.decide_pending(ex.lid_ee, ex.lid_ca, approve=True) == (
        S.CERT_STATUS_CODE_REQUEST_COMPLETE
    )
    inquiry, inquiry_state = build_card_cert_inquiry(REQUESTERS, state)
    done = open_card_cert_response(ec_bank.stub.CertInq(inquiry), inquiry_state, session.trust)
    assert done.complete and done.card is not None and done.certificate is not None
    assert done.certificate.blinded_account == blinded_account(
        done.card.pan_secret, PAN(REVIEW_CARD), EXPIRY
    )


def test_cert_inquiry_must_be_signed_by_the_requested_key(ec_bank: Bank) -> None:
    _, state, _, session = register_cardholder(ec_bank, REVIEW_CARD, EXPIRY)
    impostor = replace(state, key=new_key(ec_bank, KeyUsage.SIGNATURE))
    inquiry, inquiry_state = build_card_cert_inquiry(REQUESTERS, impostor)
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(ec_bank.stub.CertInq(inquiry), inquiry_state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_SIGNATURE_FAILURE


def test_refused_pended_request(ec_bank: Bank) -> None:
    _, state, _, session = register_cardholder(ec_bank, REVIEW_CARD, EXPIRY)
    ex = state.exchange
    ec_bank.ca.decide_pending(ex.lid_ee, ex.lid_ca, approve=False)
    inquiry, inquiry_state = build_card_cert_inquiry(REQUESTERS, state)
    outcome = open_card_cert_response(ec_bank.stub.CertInq(inquiry), inquiry_state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER


def test_cert_inquiry_for_an_unknown_registration(ec_bank: Bank) -> None:
    from setcore.registration_certreq import build_cert_inquiry

    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    ca = session.registration.ca
    request, _, _ = build_cert_inquiry(REQUESTERS, key, session.lid_ee, ca.lid_ca)
    response = ec_bank.stub.CertInq(request)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.header.rrpid,
        request=sent_digest(request),
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def test_a_pended_request_approved_after_the_card_expired_is_refused(ec_bank: Bank) -> None:
    """The issuer's word came before the card's end; an approval after it issues nothing.

    The certificate would have had to end before it began (a card's certificate never
    outlives the card): the approval failed with the issuance's ConfigurationError and
    left the request pended for good.
    """
    from gateway.bank_pki import open_ca_store
    from gateway.ca import CertificateAuthority

    _, state, _, session = register_cardholder(ec_bank, REVIEW_CARD, EXPIRY)
    ex = state.exchange
    after_the_card = card_expiry_end(EXPIRY).timestamp() * 1000 + 24 * 3600 * 1000
    store = open_ca_store(ec_bank.config)
    try:
        later = CertificateAuthority(
            ec_bank.pki.authority_keys(), store, ec_bank.pki.trust, ec_bank.issuer,
            clock=lambda: int(after_the_card),
        )  # fmt: skip
        status = later.decide_pending(ex.lid_ee, ex.lid_ca, approve=True)
    finally:
        store.close()
    assert status == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER
    inquiry, inquiry_state = build_card_cert_inquiry(REQUESTERS, state)
    outcome = open_card_cert_response(ec_bank.stub.CertInq(inquiry), inquiry_state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER
    assert outcome.certificate is None
