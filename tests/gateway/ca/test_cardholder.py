"""Cardholder CertReq decisions through the real gRPC CA: issued, and every refusal the CA
decides (SET-PROTOCOL.md 4.3): proof of possession, Chall-CA, keys, the issuer, the brand
and the form, renewals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hsm.base import KeyUsage
from setcore.freshness import new_id
from setcore.pan import PAN, blinded_account
from setcore.pki.issuance import card_expiry_end
from setcore.registration_cardholder import (
    open_card_cert_response,
)
from setpay.v1 import registration_pb2
from tests.cards import VISA_4242, VISA_DEBIT

from .conftest import CARD, EXPIRY, UNKNOWN_CARD, Bank
from .flows import (
    CARD_RENEWAL,
    REQUESTERS,
    card_request,
    filled_form,
    new_key,
    openssl_verify,
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
    ec_bank.issuer.cards[VISA_DEBIT] = ("202712", S.CERT_STATUS_CODE_REQUEST_COMPLETE)
    outcome, *_ = register_cardholder(ec_bank, VISA_DEBIT, "202712")
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


def test_unknown_card_and_wrong_expiry_get_the_same_answer(ec_bank: Bank) -> None:
    # Told apart, they would say which numbers are cards of this bank, then their expiry.
    unknown, *_ = register_cardholder(ec_bank, UNKNOWN_CARD, EXPIRY)
    wrong_expiry, *_ = register_cardholder(ec_bank, CARD, "203111")
    assert unknown.status == wrong_expiry.status == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER


def test_expired_card_is_refused_without_the_issuer(ec_bank: Bank) -> None:
    ec_bank.issuer.cards[VISA_4242] = ("202001", S.CERT_STATUS_CODE_REQUEST_COMPLETE)
    outcome, *_ = register_cardholder(ec_bank, VISA_4242, "202001")
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER


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
    everything = filled_form(fields)
    for form_id, filled in (
        ("a-form-never-handed-out", everything),
        (session.form.form_id, (*everything, ("not-on-the-form", "x"))),
        (session.form.form_id, (*everything, (fields[0], "y"))),
        (session.form.form_id, ()),  # nothing filled in: card number and expiry alone
        (session.form.form_id, everything[1:]),  # a field left out
    ):
        request, state = card_request(
            session, key, CARD, EXPIRY, reg_form_id=form_id, filled=filled
        )
        outcome = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
        assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
        assert outcome.certificate is None
    # The refusals left the challenge and the key unused: the form as handed out works.
    request, state = card_request(session, key, CARD, EXPIRY, filled=everything)
    assert open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust).complete


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
