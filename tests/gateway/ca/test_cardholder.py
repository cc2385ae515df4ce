"""Cardholder registration through the real gRPC CA: the happy path and every CA-side check."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway import metrics
from hsm.base import KeyUsage
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id, now_ms
from setcore.pan import PAN, blinded_account
from setcore.pki.issuance import card_expiry_end
from setcore.purchase import header
from setcore.registration import ca_error
from setcore.registration_cardholder import (
    RegFormState,
    build_card_cert_inquiry,
    open_card_cert_response,
)
from setpay.v1 import crypto_pb2, registration_pb2

from .conftest import CARD, EXPIRY, REVIEW_CARD, UNKNOWN_CARD, Bank
from .flows import (
    CARD_INITIAL,
    CARD_RENEWAL,
    REQUESTERS,
    CardSession,
    card_request,
    new_key,
    openssl_verify,
    purge_answers,
    register_cardholder,
    start_cardholder,
)

S = registration_pb2


def test_cardholder_registration_end_to_end(bank: Bank, tmp_path: Path) -> None:
    outcome, _, key, _ = register_cardholder(bank, CARD, EXPIRY)
    assert outcome.status == S.CERT_STATUS_CODE_REQUEST_COMPLETE
    assert outcome.certificate is not None and outcome.card is not None
    cert = outcome.certificate
    # The wallet recomputes the certified account from its own secret and the CA's nonce.
    assert cert.blinded_account == blinded_account(outcome.card.pan_secret, PAN(CARD), EXPIRY)
    assert cert.not_after <= card_expiry_end(EXPIRY)
    assert len(outcome.chain) == 1  # the Cardholder CA
    output = openssl_verify(tmp_path, bank.pki.root_der, outcome.chain, cert.der)
    assert output.strip().endswith(": OK"), output
    # The credentials sign what a purchase needs.
    credentials = outcome.credentials(REQUESTERS, key)
    assert credentials.signature_thumb == cert.thumbprint


def test_certificate_never_outlives_the_card(ec_bank: Bank) -> None:
    ec_bank.issuer.cards["4000056655665556"] = ("202712", S.CERT_STATUS_CODE_REQUEST_COMPLETE)
    outcome, *_ = register_cardholder(ec_bank, "4000056655665556", "202712")
    assert outcome.certificate is not None
    assert outcome.certificate.cert.not_valid_after_utc <= card_expiry_end("202712")


def test_bad_proof_of_possession(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    claimed, actual = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, claimed, CARD, EXPIRY, sign_with=actual)
    outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_SIG_VALIDATION_FAIL
    assert outcome.certificate is None


def test_wrong_chall_ca(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, key, CARD, EXPIRY, chall_ca=new_id())
    outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH
    # The session's own challenge still works afterwards (a mismatch does not use it up).
    outcome, *_ = register_cardholder(ec_bank, CARD, EXPIRY, session=session)
    assert outcome.status == S.CERT_STATUS_CODE_REQUEST_COMPLETE


def test_chall_ca_answers_one_request_only(ec_bank: Bank) -> None:
    outcome, _, _, session = register_cardholder(ec_bank, CARD, EXPIRY)
    assert outcome.complete
    again, *_ = register_cardholder(ec_bank, CARD, EXPIRY, session=session)
    assert again.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH


def test_key_is_never_certified_twice(ec_bank: Bank) -> None:
    first, _, key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert first.complete
    second, *_ = register_cardholder(ec_bank, CARD, EXPIRY, key=key)
    assert second.status == S.CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED


def test_unknown_card(ec_bank: Bank) -> None:
    outcome, *_ = register_cardholder(ec_bank, UNKNOWN_CARD, EXPIRY)
    assert outcome.status == S.CERT_STATUS_CODE_UNKNOWN_ACCOUNT


def test_expiry_mismatch(ec_bank: Bank) -> None:
    outcome, *_ = register_cardholder(ec_bank, CARD, "203111")
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER


def test_expired_card_is_refused_without_the_issuer(ec_bank: Bank) -> None:
    ec_bank.issuer.cards["4242424242424242"] = ("202001", S.CERT_STATUS_CODE_REQUEST_COMPLETE)
    outcome, *_ = register_cardholder(ec_bank, "4242424242424242", "202001")
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER


def _tampered(request: S.CertRequest, change: object) -> S.CertRequest:
    sealed = crypto_pb2.Sealed.FromString(request.cert_req)
    assert callable(change)
    change(sealed)
    return S.CertRequest(header=request.header, cert_req=sealed.SerializeToString())


def test_tampered_sealed_request(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, state = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)

    def flip(sealed: crypto_pb2.Sealed) -> None:
        body = bytearray(sealed.ciphertext)
        body[len(body) // 2] ^= 1
        sealed.ciphertext = bytes(body)

    response = ec_bank.stub.Cert(_tampered(request, flip))
    # Without the back key no CertRes can be addressed to the wallet: a signed SET Error.
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(response, state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_DECRYPTION_FAILURE


def test_a_refusal_is_counted_by_method_and_code(ec_bank: Bank) -> None:
    registry = CollectorRegistry()
    metrics.enable(0, registry)
    try:
        session = start_cardholder(ec_bank, CARD)
        request, _ = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)
        request.header.rrpid = new_id()  # no longer the envelope's: refused
        response = ec_bank.stub.Cert(request)
        error = ca_error(
            response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.header.rrpid
        )
        assert isinstance(error, PeerError)
        code = ErrorCode.Name(error.code)
        labels = {"method": "Cert", "code": code}
        assert registry.get_sample_value("setpay_rpc_errors_total", labels) == 1
    finally:
        metrics.disable()


def test_changed_envelope_rrpid_does_not_open(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, _ = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)
    other = new_id()

    def move(sealed: crypto_pb2.Sealed) -> None:
        sealed.rrpid = other

    changed = _tampered(request, move)
    changed.header.rrpid = other
    error = ca_error(
        ec_bank.stub.Cert(changed).error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, other
    )
    assert isinstance(error, PeerError)
    assert error.code == ErrorCode.ERROR_CODE_DECRYPTION_FAILURE


def test_header_rrpid_must_match_the_envelope(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, state = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)
    request.header.rrpid = new_id()
    response = ec_bank.stub.Cert(request)
    # The CA's Error names the header's RRPID, not the wallet's: not an answer to its request.
    with pytest.raises(ProtocolError) as unknown:
        open_card_cert_response(response, state, session.trust)
    assert unknown.value.code == ErrorCode.ERROR_CODE_UNKNOWN_RRPID
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.header.rrpid
    )
    assert isinstance(error, PeerError)
    assert error.code == ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH


def test_stale_request_is_refused(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    an_hour_ago = now_ms() - 60 * 60 * 1000
    request, state = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY, request_date=an_hour_ago
    )
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD


def test_wrong_content_type(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, state = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)

    def retype(sealed: crypto_pb2.Sealed) -> None:
        sealed.content_type = "setpay.v1.RegFormReqTBE"

    with pytest.raises(PeerError) as caught:
        open_card_cert_response(ec_bank.stub.Cert(_tampered(request, retype)), state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


def test_a_reg_form_request_is_not_a_cert_request(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    from setcore.registration_cardholder import build_reg_form_request

    reg_request, _ = build_reg_form_request(session.registration.ca, PAN(CARD), session.lid_ee)
    request = S.CertRequest(header=header(), cert_req=reg_request.reg_form_req)
    response = ec_bank.stub.Cert(request)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.header.rrpid
    )
    assert isinstance(error, PeerError)
    assert error.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


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


def test_renewal_with_both_signatures(bank: Bank) -> None:
    first, _, key, _ = register_cardholder(bank, CARD, EXPIRY)
    old = first.credentials(REQUESTERS, key)
    session = start_cardholder(bank, CARD, request_type=CARD_RENEWAL)
    renewed, *_ = register_cardholder(bank, CARD, EXPIRY, session=session, renewing=old)
    assert renewed.complete and renewed.certificate is not None
    assert renewed.certificate.thumbprint != old.signature_thumb


def test_renewal_with_only_one_signature_is_refused(ec_bank: Bank) -> None:
    first, _, key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    old = first.credentials(REQUESTERS, key)
    session = start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL)
    request, state = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY, renewing=old,
        renewal_signature=False,
    )  # fmt: skip
    outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_SIG_VALIDATION_FAIL


def test_renewal_signed_by_another_key_is_refused(ec_bank: Bank) -> None:
    first, _, key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    other, _, other_key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    # Claims to renew ``first`` but the second signature is by ``other``'s key.
    claimed = first.credentials(REQUESTERS, key)
    forged = replace(claimed, signature_key=other_key)
    session = start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL)
    request, state = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY, renewing=forged
    )
    outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_SIG_VALIDATION_FAIL
    assert other.complete


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


def test_cert_request_of_another_brand_changes_nothing(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, key, CARD, EXPIRY, brand_id="another-brand")
    outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    assert outcome.certificate is None
    # Neither the session's challenge nor the key was used up by the refusal.
    outcome, *_ = register_cardholder(ec_bank, CARD, EXPIRY, key=key, session=session)
    assert outcome.complete


def test_cert_request_must_fill_in_the_form_the_ca_handed_out(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    fields = session.form.fields
    for form_id, filled in (
        ("a-form-never-handed-out", ()),
        (session.form.form_id, (("not-on-the-form", "x"),)),
        (session.form.form_id, ((fields[0], "x"), (fields[0], "y"))),
    ):
        request, state = card_request(
            session, key, CARD, EXPIRY, reg_form_id=form_id, filled=filled
        )
        outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
        assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
        assert outcome.certificate is None
    # The refusals left the challenge and the key unused: the form as handed out works.
    request, state = card_request(session, key, CARD, EXPIRY, filled=[(fields[0], "A. Tester")])
    assert open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust).complete


def test_a_refusal_the_key_backend_cannot_sign_is_unavailable(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refused, and the CA's token goes away before the Error is signed: UNAVAILABLE, not
    # gRPC's UNKNOWN with the backend's own words in it.
    import grpc

    from gateway.ca import servicer
    from hsm.errors import TransientBackendError
    from setcore.registration_cardholder import build_card_c_init_request

    def token_gone(*args: object, **kwargs: object) -> None:
        raise TransientBackendError("token removed, slot 7 detail")

    monkeypatch.setattr(servicer, "build_error", token_gone)
    request, _ = build_card_c_init_request("another-brand", b"lid-ee")
    with pytest.raises(grpc.RpcError) as failed:
        ec_bank.stub.CardCInit(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert failed.value.details() == "certificate authority key backend unavailable"  # type: ignore[attr-defined]


def test_card_c_init_for_another_brand_is_not_served(ec_bank: Bank) -> None:
    from setcore.registration_cardholder import build_card_c_init_request

    from .flows import new_trust

    request, _ = build_card_c_init_request("another-brand", b"lid-ee")
    response = ec_bank.stub.CardCInit(request)
    assert response.WhichOneof("result") == "error"
    trust = new_trust(ec_bank)
    error = ca_error(response.error, trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.rrpid)
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
        response.error, new_trust(ec_bank), S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.rrpid
    )
    assert error.code == ErrorCode.ERROR_CODE_RRPID_REUSED


def test_cert_inquiry_for_an_unknown_registration(ec_bank: Bank) -> None:
    from setcore.registration_certreq import build_cert_inquiry

    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    ca = session.registration.ca
    request, _, _ = build_cert_inquiry(REQUESTERS, key, session.lid_ee, ca.lid_ca)
    response = ec_bank.stub.CertInq(request)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.header.rrpid
    )
    assert error.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


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
    error = ca_error(response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, state.rrpid)
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
        other_type.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, other_state.rrpid
    )
    assert error.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    # The wallet's CertReq, built from its own RegFormRes, still spends its challenge.
    outcome, *_ = register_cardholder(ec_bank, CARD, EXPIRY, session=session)
    assert outcome.complete


# The injected clocks run this far from the real one: well outside the five-minute
# freshness window, well inside the hour a session lasts.
CLOCK_OFFSET_MS = 30 * 60 * 1000


@pytest.mark.parametrize(
    ("offset", "real_date_code"),
    [
        (-CLOCK_OFFSET_MS, ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW),
        (CLOCK_OFFSET_MS, ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD),
    ],
)
def test_the_ca_judges_a_request_date_by_its_own_clock(
    ec_bank: Bank, offset: int, real_date_code: int
) -> None:
    """A CA with an injected clock dates CertReqs by that clock, not by the real one."""
    from gateway.bank_pki import open_ca_store
    from gateway.ca import CertificateAuthority
    from setcore.errors import ProtocolError

    store = open_ca_store(ec_bank.config)
    ca = CertificateAuthority(
        ec_bank.pki.authority_keys(), store, ec_bank.pki.trust, ec_bank.issuer,
        clock=lambda: now_ms() + offset,
    )  # fmt: skip
    try:
        session = start_cardholder(ec_bank, CARD)
        key = new_key(ec_bank, KeyUsage.SIGNATURE)
        dated_now, _ = card_request(session, key, CARD, EXPIRY)
        with pytest.raises(ProtocolError) as caught:
            ca.cert(dated_now)
        assert caught.value.code == real_date_code
        on_its_clock, state = card_request(
            session, key, CARD, EXPIRY, request_date=now_ms() + offset
        )
        body = ca.cert(on_its_clock)
    finally:
        store.close()
    # The certificate is valid from the CA's now, the CA's own from when the bank was made:
    # read the answer when both hold.
    at = datetime.fromtimestamp((now_ms() + max(offset, 0)) / 1000, tz=UTC)
    outcome = open_card_cert_response(S.CertResponse(cert_res=body), state, session.trust, at=at)
    assert outcome.complete


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
