"""Which CA signs a refusal: the requester's own, whose Errors alone it takes.

A merchant opens a registration's answers and Errors with its Merchant CA's certificate
only (``ca_error(only=...)``); a wallet with its Cardholder CA's. An UNKNOWN_LID to a
merchant's CertInq is how it learns that the CA never received its CertReq, and so may
drop the recorded request: signed by the Cardholder CA, as it used to be for an inquiry
about a request the CA holds no record of, it was "signed by an unexpected party" and the
merchant could never drop it. Through the real gRPC CA, ca.db and X.509 of ``conftest``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.bank_pki import load_bank_pki, open_ca_store
from gateway.ca import CertificateAuthority
from gateway.ca.merchant import TYPED_LID_PREFIX, lid_ca_type
from gateway.ca.policy import SESSION_LIFETIME_MS
from gateway.ca.publishing import record_certificate
from gateway.config import load
from gateway.provisioning import init_bank
from hsm.base import KeyUsage
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import now_ms
from setcore.pan import PAN
from setcore.pki.issuance import issue_ca_key_exchange, kem_for
from setcore.pki.roles import MERCHANT_CA, PAYMENT_GATEWAY_CA, CertificateUsage
from setcore.registration_cardholder import (
    build_card_cert_inquiry,
    build_card_cert_request,
    open_card_cert_response,
)
from setcore.registration_merchant import (
    MerchantRequestState,
    build_merchant_cert_inquiry,
    build_merchant_cert_request,
    open_merchant_cert_response,
)
from setpay.v1 import crypto_pb2

from .conftest import CARD, EXPIRY, Bank, DictIssuer, serving
from .flows import (
    REQUESTERS,
    MerchantSession,
    filled_form,
    new_key,
    start_cardholder,
    start_merchant,
)
from .test_merchant import _merchant


def _unsent_merchant_request(bank: Bank, session: MerchantSession) -> MerchantRequestState:
    """A merchant CertReq built and recorded, as a merchant whose send never arrived has."""
    sig, kex = new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE)
    _, state = build_merchant_cert_request(
        REQUESTERS, sig, kex, session.registration, session.state,
        filled=[(name, "Corner Shop Ltd") for name in session.registration.form.fields],
    )  # fmt: skip
    return state


def _inquire(bank: Bank, session: MerchantSession, state: MerchantRequestState) -> PeerError:
    """The CA's answer to the merchant's CertInq, opened as the merchant opens it."""
    inquiry, state = build_merchant_cert_inquiry(REQUESTERS, state)
    with pytest.raises(PeerError) as refused:  # not a ProtocolError naming the signer
        open_merchant_cert_response(bank.stub.CertInq(inquiry), state, session.trust)
    return refused.value


def _sweep_sessions(bank: Bank) -> None:
    """The CA's housekeeping, run once every session it holds has expired."""
    store = open_ca_store(bank.config)
    try:
        with store.write() as tx:
            tx.purge(now_ms() + SESSION_LIFETIME_MS + 1, 0)
    finally:
        store.close()


def test_a_merchant_certinq_about_a_request_the_ca_never_received_is_its_cas_unknown_lid(
    ec_bank: Bank,
) -> None:
    session = start_merchant(ec_bank, _merchant("never-sent"))
    state = _unsent_merchant_request(ec_bank, session)
    refused = _inquire(ec_bank, session, state)
    assert refused.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def test_a_merchant_certinq_after_its_session_was_swept_is_its_cas_unknown_lid(
    ec_bank: Bank,
) -> None:
    # The merchant comes back the next day: the session that knew the CA is gone, and
    # only the LID-CA the Merchant CA made still says which CA it is for.
    session = start_merchant(ec_bank, _merchant("next-day"))
    assert lid_ca_type(session.registration.ca.lid_ca) == MERCHANT_CA
    state = _unsent_merchant_request(ec_bank, session)
    _sweep_sessions(ec_bank)
    refused = _inquire(ec_bank, session, state)
    assert refused.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def test_a_wallet_certinq_about_a_request_the_ca_never_received_is_the_cardholder_cas(
    ec_bank: Bank,
) -> None:
    session = start_cardholder(ec_bank, CARD)
    assert lid_ca_type(session.registration.ca.lid_ca) is None
    _, state = build_card_cert_request(
        REQUESTERS, new_key(ec_bank, KeyUsage.SIGNATURE), session.form, session.registration,
        PAN(CARD), EXPIRY, filled=filled_form(session.form.fields),
    )  # fmt: skip
    for swept in (False, True):
        if swept:
            _sweep_sessions(ec_bank)
        inquiry, asked = build_card_cert_inquiry(REQUESTERS, state)
        with pytest.raises(PeerError) as refused:
            open_card_cert_response(ec_bank.stub.CertInq(inquiry), asked, session.trust)
        assert refused.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID


def test_only_a_lid_ca_a_merchant_or_gateway_ca_made_names_one() -> None:
    assert lid_ca_type(TYPED_LID_PREFIX + bytes([PAYMENT_GATEWAY_CA]) + bytes(16)) == (
        PAYMENT_GATEWAY_CA
    )
    assert lid_ca_type(TYPED_LID_PREFIX + bytes([MERCHANT_CA]) + bytes(15)) is None
    assert lid_ca_type(TYPED_LID_PREFIX + bytes([1]) + bytes(16)) is None  # a cardholder's
    assert lid_ca_type(bytes(21)) is None


@pytest.fixture
def own_bank(tmp_path: Path) -> Iterator[Bank]:
    """An EC bank of this test's own: the test records a certificate in its ca.db."""
    result = init_bank(tmp_path / "bank", profile="ec", env={})
    config = load(result.config_path, env={})
    with closing(load_bank_pki(config)) as pki, closing(open_ca_store(config)) as store:
        issuer = DictIssuer({})
        ca = CertificateAuthority(pki.authority_keys(), store, pki.trust, issuer)
        with serving(ca) as stub:
            yield Bank(result.directory, config, pki, ca, issuer, stub, "ec")


def test_a_resend_sealed_to_an_earlier_merchant_ca_key_is_refused_by_the_merchant_ca(
    own_bank: Bank,
) -> None:
    """A CertReq sealed to a key-exchange certificate the Merchant CA had before its
    current one is WRONG_RECIPIENT, signed by the Merchant CA."""
    session = start_merchant(own_bank, _merchant("old-kex"))
    merchant_ca = own_bank.ca.keys.merchant.issuing
    earlier = new_key(own_bank, KeyUsage.KEY_EXCHANGE)
    der = issue_ca_key_exchange(merchant_ca, earlier.public_key, kem=kem_for(earlier))
    with closing(open_ca_store(own_bank.config)) as store, store.write() as tx:
        record_certificate(tx, der, merchant_ca, datetime.now(UTC))
    sealed_to = session.trust.resolve(
        thumbprint(der), crypto_pb2.CertBundle(certificates=[der]), MERCHANT_CA,
        CertificateUsage.KEY_EXCHANGE,
    )  # fmt: skip
    registration = replace(
        session.registration, ca=replace(session.registration.ca, key_exchange=sealed_to)
    )
    sig, kex = new_key(own_bank, KeyUsage.SIGNATURE), new_key(own_bank, KeyUsage.KEY_EXCHANGE)
    request, state = build_merchant_cert_request(
        REQUESTERS, sig, kex, registration, session.state,
        filled=[(name, "Corner Shop Ltd") for name in registration.form.fields],
    )  # fmt: skip
    with pytest.raises(PeerError) as refused:
        open_merchant_cert_response(own_bank.stub.Cert(request), state, session.trust)
    assert refused.value.code == ErrorCode.ERROR_CODE_WRONG_RECIPIENT
