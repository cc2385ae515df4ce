"""A CA whose own certificate or key-exchange certificate is revoked or expired answers no
registration (gRPC UNAVAILABLE), and its log line says which and what to do.

It used to go on answering and issuing: after ``setpay ca revoke`` of the Cardholder CA
itself, wallets refused its every answer, yet it kept certifying keys; a year after
``setpay init`` its key-exchange certificate had ended and registration failed with no
word of why. Real parts: the EC bank's keys, a ca.db of the test's own holding the CAs'
certificates, the CA served by a gRPC server on port 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from gateway.ca import authority
from gateway.ca import servicer as ca_servicer
from gateway.ca.errors import CaCertificateUnusable
from gateway.ca.store import CaStore
from hsm.base import KeyUsage
from setcore.encoding import thumbprint
from setcore.pki.issuance import END_ENTITY_LIFETIME
from setcore.registration_cardholder import (
    CardRequestState,
    build_card_c_init_request,
    build_card_cert_inquiry,
    open_card_cert_response,
)
from setcore.registration_merchant import (
    MerchantIdentity,
    MerchantRequestState,
    open_merchant_cert_response,
)
from setpay.v1 import registration_pb2

from .conftest import EXPIRY, REVIEW_CARD, Bank
from .flows import (
    REQUESTERS,
    CardSession,
    MerchantSession,
    merchant_request,
    new_key,
    register_cardholder,
    start_merchant,
)
from .standing_support import kex_of, own_ca


def _card_c_init(bank: Bank) -> None:
    request, _ = build_card_c_init_request(bank.brand_id, os.urandom(8))
    bank.stub.CardCInit(request)


def _pended(bank: Bank) -> tuple[CardRequestState, CardSession]:
    """A cardholder registration the CA pended for review: its state and session."""
    outcome, state, _, session = register_cardholder(bank, REVIEW_CARD, EXPIRY)
    assert outcome.status == S.CERT_STATUS_CODE_REQUEST_PENDED
    return state, session


def _unavailable(call: Callable[[], object], caplog: pytest.LogCaptureFixture) -> str:
    """The refusal ``call`` gets, and the log line that explains it."""
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger=ca_servicer.__name__),
        pytest.raises(grpc.RpcError) as caught,
    ):
        call()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "certificate authority certificate unavailable"
    return caplog.text


S = registration_pb2
SHOP = MerchantIdentity("standing-shop-1", "Standing Shop Ltd")


def test_a_ca_whose_certificate_is_revoked_answers_no_registration(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with own_ca(ec_bank, tmp_path / "ca.db") as (bank, _):
        _card_c_init(bank)  # answers while it stands
        bank.ca.revoke(thumb=bank.ca.keys.cardholder.issuing.thumbprint)
        logged = _unavailable(lambda: _card_c_init(bank), caplog)
        assert "Cardholder CA: its certificate is revoked" in logged
        start_merchant(bank, SHOP)  # the Merchant CA still stands

        bank.ca.revoke(thumb=bank.ca.keys.merchant.key_exchange_thumb)
        logged = _unavailable(lambda: start_merchant(bank, SHOP), caplog)
        assert "Merchant CA: its key-exchange certificate is revoked" in logged


def test_a_ca_whose_key_exchange_certificate_expired_says_what_it_needs(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with own_ca(ec_bank, tmp_path / "ca.db", kex_lifetime=END_ENTITY_LIFETIME) as (bank, clock):
        kex_der = kex_of(bank.ca.keys.cardholder.credentials)
        end = x509.load_der_x509_certificate(kex_der).not_valid_after_utc
        clock.at_ms = int(end.timestamp() * 1000)
        _card_c_init(bank)  # its last moment
        clock.at_ms += 1000
        logged = _unavailable(lambda: _card_c_init(bank), caplog)
        assert "its key-exchange certificate expired at" in logged
        assert "the CA needs a new key-exchange key and certificate" in logged
        assert thumbprint(kex_der).hex() not in logged


# -- what needs the CA's signature only ---------------------------------------------------
#
# A CA whose key-exchange certificate is revoked or expired refused CertInq too, though
# CertInq and its answer are signed, never sealed to that key: a cardholder whose pended
# request was approved could not fetch the certificate issued to it, nor could anyone of a
# bank made before key-exchange certificates lasted the CA's life once its ended (a year).


def test_a_certificate_issued_is_fetched_after_the_cas_key_exchange_certificate_is_revoked(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with own_ca(ec_bank, tmp_path / "ca.db") as (bank, _):
        state, session = _pended(bank)
        ex = state.exchange
        approved = bank.ca.decide_pending(ex.lid_ee, ex.lid_ca, approve=True)
        assert approved == S.CERT_STATUS_CODE_REQUEST_COMPLETE
        bank.ca.revoke(thumb=bank.ca.keys.cardholder.key_exchange_thumb)

        inquiry, inquiry_state = build_card_cert_inquiry(REQUESTERS, state)
        fetched = open_card_cert_response(bank.stub.CertInq(inquiry), inquiry_state, session.trust)
        assert fetched.status == S.CERT_STATUS_CODE_REQUEST_COMPLETE
        assert fetched.certificate is not None
        # Nothing new is sealed to the revoked key: no new registration starts.
        logged = _unavailable(lambda: _card_c_init(bank), caplog)
        assert "Cardholder CA: its key-exchange certificate is revoked" in logged


def test_a_retried_cert_request_gets_its_answer_after_the_key_exchange_certificate_is_revoked(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with own_ca(ec_bank, tmp_path / "ca.db") as (bank, _):
        session, waiting = start_merchant(bank, SHOP), start_merchant(bank, SHOP)
        request, state = _merchant_request(bank, session)
        first = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
        assert first.complete
        bank.ca.revoke(thumb=bank.ca.keys.merchant.key_exchange_thumb)

        # The answer was lost: the very request again gets it again.
        again = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
        assert again.signature is not None and first.signature is not None
        assert again.signature.thumbprint == first.signature.thumbprint
        # A new request, sealed to the revoked key, is not opened.
        fresh, _ = _merchant_request(bank, waiting)
        logged = _unavailable(lambda: bank.stub.Cert(fresh), caplog)
        assert "Merchant CA: its key-exchange certificate is revoked" in logged


def test_a_cardholder_ca_whose_certificate_is_revoked_answers_no_cert_inquiry(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with own_ca(ec_bank, tmp_path / "ca.db") as (bank, _):
        state, _ = _pended(bank)
        bank.ca.revoke(thumb=bank.ca.keys.cardholder.issuing.thumbprint)
        inquiry, _ = build_card_cert_inquiry(REQUESTERS, state)
        logged = _unavailable(lambda: bank.stub.CertInq(inquiry), caplog)
        assert "Cardholder CA: its certificate is revoked" in logged


def test_a_revoked_cardholder_ca_issues_no_pended_certificate(
    ec_bank: Bank, tmp_path: Path
) -> None:
    with own_ca(ec_bank, tmp_path / "ca.db") as (bank, _):
        state, _ = _pended(bank)
        bank.ca.revoke(thumb=bank.ca.keys.cardholder.issuing.thumbprint)
        ex = state.exchange
        with pytest.raises(CaCertificateUnusable, match="its certificate is revoked"):
            bank.ca.decide_pending(ex.lid_ee, ex.lid_ca, approve=True)
        store = CaStore.open(tmp_path / "ca.db")
        try:
            with store.read() as tx:
                record = tx.latest_request(ex.lid_ee, ex.lid_ca)
        finally:
            store.close()
        assert record is not None and record.status == S.CERT_STATUS_CODE_REQUEST_PENDED
        assert record.cert_thumbs == ()


def _merchant_request(
    bank: Bank, session: MerchantSession
) -> tuple[registration_pb2.CertRequest, MerchantRequestState]:
    sig, kex = new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE)
    fields = session.registration.form.fields
    return merchant_request(session, sig, kex, filled=[(f, "Standing Shop Ltd") for f in fields])


# -- the warning of an end, repeated ---------------------------------------------------


def _ending_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == authority.__name__]
    caplog.clear()
    return [line for line in lines if "from then on that CA" in line]


def test_a_running_ca_repeats_the_warning_of_an_end_once_a_day(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The bank's start warned once; a bank that runs for months warned no more, and its
    # registration stopped with the start's line long gone from anyone's screen.
    with own_ca(ec_bank, tmp_path / "ca.db", kex_lifetime=END_ENTITY_LIFETIME) as (bank, clock):
        end = x509.load_der_x509_certificate(kex_of(bank.ca.keys.cardholder.credentials))
        ends_ms = int(end.not_valid_after_utc.timestamp() * 1000)
        minute, day = 60 * 1000, 24 * 60 * 60 * 1000
        with caplog.at_level(logging.WARNING, logger=authority.__name__):
            clock.at_ms = ends_ms - 40 * day  # not within the month yet
            _card_c_init(bank)
            assert _ending_lines(caplog) == []
            clock.at_ms = ends_ms - 10 * day - minute  # a request the next day: within it
            _card_c_init(bank)
            (line,) = _ending_lines(caplog)
            assert line.startswith("setpay Cardholder CA: its key-exchange certificate ends in")
            assert line.endswith("from then on that CA starts no registration")
            clock.at_ms += 12 * 60 * minute  # swept again, but said once a day
            _card_c_init(bank)
            assert _ending_lines(caplog) == []
            clock.at_ms += 12 * 60 * minute + minute
            _card_c_init(bank)
            assert len(_ending_lines(caplog)) == 1
