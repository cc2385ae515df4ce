"""A cardholder renewal the issuer pended, decided by a person later: the certificate it
renews may be revoked meanwhile (a stolen device), and then the renewal is refused."""

from __future__ import annotations

import sqlite3

from setcore.credentials import Credentials
from setcore.pki.certificate import load_certificate
from setcore.registration_cardholder import (
    CardRequestState,
    build_card_cert_inquiry,
    open_card_cert_response,
)
from setpay.v1 import registration_pb2
from tests.cards import card

from .conftest import EXPIRY, Bank
from .flows import CARD_RENEWAL, REQUESTERS, CardSession, register_cardholder, start_cardholder

S = registration_pb2
COMPLETE = S.CERT_STATUS_CODE_REQUEST_COMPLETE
PENDED = S.CERT_STATUS_CODE_REQUEST_PENDED
REJECTED_BY_ISSUER = S.CERT_STATUS_CODE_REJECTED_BY_ISSUER
# Cards of these tests' own (the banks are shared by the session).
TEST_BIN = "492914"


def _pended_renewal(bank: Bank, serial: int) -> tuple[Credentials, CardRequestState, CardSession]:
    """A card certified, then its renewal pended by the issuer: (old certificate's
    credentials, the renewal's state, its session)."""
    pan = card(TEST_BIN, serial)
    bank.issuer.cards[pan] = (EXPIRY, COMPLETE)
    first, _, key, _ = register_cardholder(bank, pan, EXPIRY)
    assert first.complete
    old = first.credentials(REQUESTERS, key)
    bank.issuer.cards[pan] = (EXPIRY, PENDED)  # the issuer wants a person to look first
    session = start_cardholder(bank, pan, request_type=CARD_RENEWAL)
    pended, state, _, _ = register_cardholder(bank, pan, EXPIRY, session=session, renewing=old)
    assert pended.status == PENDED
    return old, state, session


def test_a_pended_renewal_of_a_certificate_revoked_meanwhile_is_refused(ec_bank: Bank) -> None:
    """Approving it must not issue a certificate to the holder of a revoked one: the
    revocation, made after the renewal was pended, is checked again at the decision."""
    old, state, session = _pended_renewal(ec_bank, 1)
    ec_bank.ca.revoke(serial=load_certificate(old.signature_cert).serial_number)
    ex = state.exchange
    assert ec_bank.ca.decide_pending(ex.lid_ee, ex.lid_ca, approve=True) == REJECTED_BY_ISSUER
    inquiry, inquiry_state = build_card_cert_inquiry(REQUESTERS, state)
    outcome = open_card_cert_response(ec_bank.stub.CertInq(inquiry), inquiry_state, session.trust)
    assert outcome.status == REJECTED_BY_ISSUER and outcome.certificate is None


def test_a_pended_renewal_of_a_live_certificate_is_issued(ec_bank: Bank) -> None:
    _, state, session = _pended_renewal(ec_bank, 2)
    ex = state.exchange
    assert ec_bank.ca.decide_pending(ex.lid_ee, ex.lid_ca, approve=True) == COMPLETE
    inquiry, inquiry_state = build_card_cert_inquiry(REQUESTERS, state)
    outcome = open_card_cert_response(ec_bank.stub.CertInq(inquiry), inquiry_state, session.trust)
    assert outcome.complete


def test_a_pended_renewal_without_its_renewed_certificate_recorded_is_refused(
    ec_bank: Bank,
) -> None:
    """One pended before ca.db kept the renewed certificate: whether it was revoked since
    cannot be told, so it is refused (the holder renews again)."""
    _, state, _ = _pended_renewal(ec_bank, 3)
    db = sqlite3.connect(ec_bank.config.path(ec_bank.config.ca_db))
    try:
        with db:
            db.execute("DELETE FROM pended_renewals WHERE rrpid = ?", (state.exchange.rrpid,))
    finally:
        db.close()
    ex = state.exchange
    assert ec_bank.ca.decide_pending(ex.lid_ee, ex.lid_ca, approve=True) == REJECTED_BY_ISSUER
