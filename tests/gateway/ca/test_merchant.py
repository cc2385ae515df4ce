"""Merchant and gateway registration through the real gRPC CA, and the CA-side checks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca import CaPolicy, CertificateAuthority
from gateway.provisioning import GATEWAY_NAME
from hsm.base import KeyHandle, KeyUsage
from setcore.error_message import open_error
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import new_id
from setcore.pki.roles import MERCHANT, PAYMENT_GATEWAY, CertificateUsage
from setcore.registration import ca_error, key_thumbprint, spki_of
from setcore.registration_merchant import (
    GatewayIdentity,
    MerchantIdentity,
    build_me_aq_c_init_request,
    open_merchant_cert_response,
)
from setpay.v1 import crypto_pb2, registration_pb2

from .conftest import Bank, serving
from .flows import (
    MER_RENEWAL,
    PGWY_INITIAL,
    REQUESTERS,
    MerchantSession,
    certificates_naming,
    merchant_request,
    new_key,
    new_trust,
    openssl_verify,
    purge_answers,
    register_merchant,
    sent_as,
    sent_digest,
    start_merchant,
)

S = registration_pb2


def _merchant(name: str) -> MerchantIdentity:
    return MerchantIdentity(f"m-{name}-{new_id().hex()[:8]}", f"{name} shop", "400000")


def test_merchant_registration_end_to_end(bank: Bank, tmp_path: Path) -> None:
    identity = _merchant("corner")
    outcome, state, session = register_merchant(bank, identity, account="DE89370400440532013000")
    assert outcome.complete, outcome
    assert outcome.signature is not None and outcome.key_exchange is not None
    for cert, usage in ((outcome.signature, "sig"), (outcome.key_exchange, "kex")):
        assert cert.certificate_type == MERCHANT
        assert cert.merchant_data is not None
        assert cert.merchant_data.merchant_id == identity.merchant_id
        output = openssl_verify(tmp_path / usage, bank.pki.root_der, outcome.chain, cert.der)
        assert output.strip().endswith(": OK"), output
    assert outcome.key_exchange.usage is CertificateUsage.KEY_EXCHANGE
    assert outcome.key_exchange.kem is not None
    assert (identity.merchant_id, identity.merchant_name) in bank.issuer.merchants
    credentials = outcome.credentials(REQUESTERS, state)
    assert credentials.key_exchange_thumb == outcome.key_exchange.thumbprint
    assert session.trust.revocation is not None  # the CA stapled the BCI


@pytest.fixture
def gateway_ca(ec_bank: Bank) -> Iterator[Bank]:
    """The EC bank's CAs with gateway registration switched on (``CaPolicy``), served on a
    port of their own: the same keys, ca.db and acquirer's books as ``ec_bank``'s."""
    store = open_ca_store(ec_bank.config)
    ca = CertificateAuthority(
        ec_bank.pki.authority_keys(), store, ec_bank.pki.trust, ec_bank.issuer,
        policy=CaPolicy(gateway_registration=True),
    )  # fmt: skip
    try:
        with serving(ca) as stub:
            yield replace(ec_bank, ca=ca, stub=stub)
    finally:
        store.close()


def test_gateway_registration_is_not_served_unless_the_policy_allows_it(
    ec_bank: Bank, gateway_ca: Bank
) -> None:
    # A gateway certificate is what wallets seal card numbers to: anyone on the open CA
    # port could have had one, and with a merchant certificate (as open) named it in
    # PInitRes to read the PANs of every wallet that bought.
    identity = GatewayIdentity("400000", f"gw-{new_id().hex()[:8]}")
    request, _ = build_me_aq_c_init_request(PGWY_INITIAL, identity, ec_bank.brand_id, os.urandom(8))
    response = ec_bank.stub.MeAqCInit(request)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, new_trust(ec_bank), S.CERTIFICATE_TYPE_PAYMENT_GATEWAY_CA, request.rrpid,
        request=sent_digest(request),
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED
    # Nor a CertReq sealed to the Payment Gateway CA's key (a session opened elsewhere).
    session = start_merchant(gateway_ca, identity, request_type=PGWY_INITIAL)
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    cert_request, _ = merchant_request(session, sig, kex)
    response = ec_bank.stub.Cert(cert_request)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_PAYMENT_GATEWAY_CA,
        cert_request.header.rrpid, request=sent_digest(cert_request),
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED
    assert certificates_naming(ec_bank, identity.acquirer_business_id) == []
    assert not _key_claimed(ec_bank, sig) and not _key_claimed(ec_bank, kex)


def test_gateway_registration(gateway_ca: Bank, tmp_path: Path) -> None:
    identity = GatewayIdentity("400000", f"gw-{new_id().hex()[:8]}")
    session = start_merchant(gateway_ca, identity, request_type=PGWY_INITIAL)
    outcome, *_ = register_merchant(gateway_ca, identity, session=session)
    assert outcome.complete and outcome.signature is not None
    assert outcome.signature.certificate_type == PAYMENT_GATEWAY
    assert outcome.signature.subject_id == identity.acquirer_business_id
    output = openssl_verify(tmp_path, gateway_ca.pki.root_der, outcome.chain, outcome.signature.der)
    assert output.strip().endswith(": OK"), output


def test_merchant_request_sealed_to_the_gateway_ca_is_refused(gateway_ca: Bank) -> None:
    ec_bank = gateway_ca
    merchant = start_merchant(ec_bank, _merchant("lost"))
    gateway = start_merchant(
        ec_bank, GatewayIdentity("400000", "gw-lost"), request_type=PGWY_INITIAL
    )
    assert gateway.registration.ca.signer.certificate_type == S.CERTIFICATE_TYPE_PAYMENT_GATEWAY_CA
    # A merchant request (merchant identity and request type) sealed to the PCA's key.
    misdirected = MerchantSession(merchant.trust, merchant.state, gateway.registration)
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(misdirected, sig, kex)
    response = ec_bank.stub.Cert(request)
    assert response.WhichOneof("result") == "error"
    # The CA whose key it was sealed to (the PCA) answers, and says why.
    error = open_error(
        response.error, merchant.trust, S.CERTIFICATE_TYPE_PAYMENT_GATEWAY_CA,
        rrpid=request.header.rrpid, request=state.exchange.request_digest,
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED


def test_bad_proof_of_possession(ec_bank: Bank) -> None:
    session = start_merchant(ec_bank, _merchant("pop"))
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(
        session, sig, kex, sign_with=new_key(ec_bank, KeyUsage.SIGNATURE)
    )
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_SIG_VALIDATION_FAIL


def test_chall_ca_is_mandatory_for_merchants(ec_bank: Bank) -> None:
    session = start_merchant(ec_bank, _merchant("chall"))
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    for chall in (b"", new_id()):
        request, state = merchant_request(session, sig, kex, chall_ca=chall)
        outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
        assert outcome.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH


def test_identity_must_be_the_one_registered(ec_bank: Bank) -> None:
    session = start_merchant(ec_bank, _merchant("first"))
    # The session (LID-CA, Chall-CA) of "first", the identity of someone else.
    swapped = replace(session.state, identity=_merchant("second"))
    mixed = MerchantSession(session.trust, swapped, session.registration)
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(mixed, sig, kex)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT


def test_keys_are_never_certified_twice(ec_bank: Bank) -> None:
    keys = (new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE))
    first, *_ = register_merchant(ec_bank, _merchant("twice"), keys=keys)
    assert first.complete
    # The same key-exchange key with a new signature key: still refused.
    reuse = (new_key(ec_bank, KeyUsage.SIGNATURE), keys[1])
    second, *_ = register_merchant(ec_bank, _merchant("again"), keys=reuse)
    assert second.status == S.CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED


def test_the_rrpid_of_a_decided_request_whose_answer_was_purged_is_refused(
    ec_bank: Bank, caplog: pytest.LogCaptureFixture
) -> None:
    """As for cardholders: RRPID_REUSED, never UNAVAILABLE with a traceback in the log."""
    first, state, _ = register_merchant(ec_bank, _merchant("purged"))
    assert first.complete
    purge_answers(ec_bank)
    session = start_merchant(ec_bank, _merchant("reuses"))
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, again = merchant_request(session, sig, kex, rrpid=state.exchange.rrpid)
    with caplog.at_level(logging.INFO), pytest.raises(PeerError) as caught:
        open_merchant_cert_response(ec_bank.stub.Cert(request), again, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_RRPID_REUSED
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    request, fresh = merchant_request(session, sig, kex)
    assert open_merchant_cert_response(ec_bank.stub.Cert(request), fresh, session.trust).complete


def test_tampered_request_gets_a_decryption_error(ec_bank: Bank) -> None:
    session = start_merchant(ec_bank, _merchant("tamper"))
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(session, sig, kex, account="GB33BUKB20201555555555")
    sealed = crypto_pb2.Sealed.FromString(request.cert_req)
    extra = bytearray(sealed.extra_ciphertext)
    extra[0] ^= 0x80
    sealed.extra_ciphertext = bytes(extra)
    request.cert_req = sealed.SerializeToString()
    # A merchant's CertRes is only signed: the CA still answers it, by RRPID.
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_DECRYPTION_ERROR


def test_wrong_content_type(ec_bank: Bank) -> None:
    session = start_merchant(ec_bank, _merchant("ct"))
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(session, sig, kex)
    sealed = crypto_pb2.Sealed.FromString(request.cert_req)
    sealed.content_type = "setpay.v1.CertInqReqTBS"
    request.cert_req = sealed.SerializeToString()
    with pytest.raises(PeerError) as caught:
        sent = sent_as(state, request)
        open_merchant_cert_response(ec_bank.stub.Cert(request), sent, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


def test_merchant_renewal(ec_bank: Bank) -> None:
    identity = _merchant("renew")
    first, state, _ = register_merchant(ec_bank, identity)
    old = first.credentials(REQUESTERS, state)
    session = start_merchant(ec_bank, identity, request_type=MER_RENEWAL)
    renewed, *_ = register_merchant(ec_bank, identity, session=session, renewing=old)
    assert renewed.complete and renewed.signature is not None
    assert renewed.signature.thumbprint != old.signature_thumb


def test_merchant_cannot_renew_another_merchants_certificate(ec_bank: Bank) -> None:
    victim = _merchant("victim")
    first, state, _ = register_merchant(ec_bank, victim)
    stolen = first.credentials(REQUESTERS, state)
    thief = _merchant("thief")
    session = start_merchant(ec_bank, thief, request_type=MER_RENEWAL)
    outcome, *_ = register_merchant(ec_bank, thief, session=session, renewing=stolen)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT


def test_unknown_request_type_is_not_served(ec_bank: Bank) -> None:
    request = registration_pb2.MeAqCInitRequest(
        rrpid=new_id(), lid_ee=b"lid", chall_ee=new_id(), request_type=2,  # type: ignore[arg-type]
        brand_id=ec_bank.brand_id, language="en",
    )  # fmt: skip
    response = ec_bank.stub.MeAqCInit(request)
    assert response.WhichOneof("result") == "error"
    # A requester with only the root: the Error staples the BCI needed to verify it.
    error = ca_error(
        response.error, new_trust(ec_bank), S.CERTIFICATE_TYPE_MERCHANT_CA, request.rrpid,
        request=sent_digest(request),
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED


def test_refused_merchant_requests_change_nothing(ec_bank: Bank) -> None:
    session = start_merchant(ec_bank, _merchant("refused"))
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    fields = session.registration.form.fields
    for change, status in (
        ({"brand_id": "another-brand"}, S.CERT_STATUS_CODE_REJECTED_BY_AGENT),
        ({"reg_form_id": "a-form-never-handed-out"}, S.CERT_STATUS_CODE_REJECTED_BY_AGENT),
        ({"filled": (("not-on-the-form", "x"),)}, S.CERT_STATUS_CODE_REJECTED_BY_AGENT),
        ({"filled": ((fields[0], "x"), (fields[0], "y"))}, S.CERT_STATUS_CODE_REJECTED_BY_AGENT),
    ):
        request, state = merchant_request(session, sig, kex, **change)  # type: ignore[arg-type]
        outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
        assert outcome.status == status, change
        assert outcome.signature is None and outcome.key_exchange is None
    # One key for both certificates: refused, and neither key is taken by the refusal.
    request, state = merchant_request(session, sig, sig)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED
    assert ec_bank.issuer.merchants.count(session.state.identity.subject) == 0
    # The session's challenge and both keys are still usable.
    outcome, *_ = register_merchant(
        ec_bank, session.state.identity, session=session, keys=(sig, kex)
    )
    assert outcome.complete


def test_chall_ca_is_bound_to_the_request_type(ec_bank: Bank) -> None:
    identity = _merchant("kind")
    session = start_merchant(ec_bank, identity, request_type=MER_RENEWAL)
    # Chall-CA was issued for a renewal; an initial request cannot spend it.
    initial = MerchantSession(
        session.trust,
        replace(session.state, request_type=S.REQUEST_TYPE_MER_INITIAL_BOTH),
        session.registration,
    )
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(initial, sig, kex)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH


def test_me_aq_c_init_for_another_brand_is_not_served(ec_bank: Bank) -> None:
    request, _ = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, _merchant("brand"), "another-brand", b"lid"
    )
    response = ec_bank.stub.MeAqCInit(request)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, new_trust(ec_bank), S.CERTIFICATE_TYPE_MERCHANT_CA, request.rrpid,
        request=sent_digest(request),
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED


# -- an initial registration never takes a name that holds live certificates ---------------


def _key_claimed(bank: Bank, key: KeyHandle) -> bool:
    store = open_ca_store(bank.config)
    try:
        with store.read() as tx:
            return tx.key_claimed(key_thumbprint(spki_of(key.public_key)))
    finally:
        store.close()


def test_a_gateway_name_with_live_certificates_is_not_registered_again(gateway_ca: Bank) -> None:
    ec_bank = gateway_ca
    fresh = GatewayIdentity("400000", f"gw-{new_id().hex()[:8]}")
    session = start_merchant(ec_bank, fresh, request_type=PGWY_INITIAL)
    first, *_ = register_merchant(ec_bank, fresh, session=session)
    assert first.complete
    # That gateway's name again, and the bank's own gateway's (certified at bank init).
    for identity in (fresh, GatewayIdentity("400000", GATEWAY_NAME)):
        name = identity.acquirer_business_id
        held = certificates_naming(ec_bank, name)
        assert len(held) == 2, name
        session = start_merchant(ec_bank, identity, request_type=PGWY_INITIAL)
        outcome, *_ = register_merchant(ec_bank, identity, session=session)
        assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT, name
        assert certificates_naming(ec_bank, name) == held


def test_a_key_the_ca_does_not_allow_is_rejected_by_agent(ec_bank: Bank) -> None:
    """An unknown KEM or a key-exchange key off the allow-list gets REJECTED_BY_AGENT.

    The request's signatures verified: SIG_VALIDATION_FAIL would send the requester looking
    for a signing fault it does not have. SET-PROTOCOL.md 4.1 names no status for a refused
    key; rejectedByAgent is the CA's own refusal, as for a form it never handed out.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from hsm.base import KemAlgorithm

    identity = _merchant("weak-kex")
    session = start_merchant(ec_bank, identity)
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    rsa_1024 = spki_of(rsa.generate_private_key(65537, 1024).public_key())
    p384 = spki_of(ec.generate_private_key(ec.SECP384R1()).public_key())
    for change in (
        {"kem": "kem-from-nowhere"},
        {"public_key_enc": rsa_1024, "kem": KemAlgorithm.RSA_OAEP_SHA256.value},
        {"public_key_enc": p384},
        {"kem": KemAlgorithm.RSA_OAEP_SHA256.value},  # an RSA KEM for an EC key
    ):
        request, state = merchant_request(session, sig, kex, **change)  # type: ignore[arg-type]
        outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
        assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT, change
        assert outcome.signature is None and outcome.key_exchange is None
    # The refusals used up neither the challenge nor the keys.
    outcome, *_ = register_merchant(ec_bank, identity, session=session, keys=(sig, kex))
    assert outcome.complete


def test_a_signature_by_another_kind_of_key_is_still_a_bad_signature(ec_bank: Bank) -> None:
    """A proof of possession whose algorithm is not the new key's is SIG_VALIDATION_FAIL."""
    from hsm.base import KeyAlgorithm

    session = start_merchant(ec_bank, _merchant("alg-swap"))
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    rsa_key = REQUESTERS.generate("alg-swap-rsa", KeyUsage.SIGNATURE, KeyAlgorithm.RSA_2048)
    request, state = merchant_request(session, sig, kex, sign_with=rsa_key)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_SIG_VALIDATION_FAIL
