"""Revocation: a new CRL and BCI in ca.db, served by GetBrandCRLIdentifier, enforced everywhere."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from cryptography import x509

from gateway.ca import AlreadyRevoked, NotRevocable, UnknownCertificate
from hsm.base import KeyUsage
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki.roles import CARDHOLDER, MERCHANT, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.registration_cardholder import open_card_cert_response
from setcore.registration_merchant import MerchantIdentity
from setpay.v1 import registration_pb2

from .conftest import CARD, EXPIRY, Bank
from .flows import (
    CARD_RENEWAL,
    REQUESTERS,
    card_request,
    new_key,
    register_cardholder,
    register_merchant,
    start_cardholder,
)

S = registration_pb2
# How long the test waits for another process's revocation to show (the watcher polls
# every second); a bound for a hung test, not a speed requirement.
WAIT_SECONDS = 30


def _bci(bank: Bank) -> tuple[int, S.GetBrandCRLIdentifierResponse]:
    response = bank.stub.GetBrandCRLIdentifier(
        S.GetBrandCRLIdentifierRequest(brand_id=bank.brand_id)
    )
    trust = TrustStore(bank.pki.root_der)
    trust.update_revocation(response.brand_crl_identifier, response.crls)
    assert trust.revocation is not None
    return trust.revocation.sequence_num, response


def _refused_as_revoked(bank: Bank, response: S.GetBrandCRLIdentifierResponse, der: bytes,
                        chain: tuple[bytes, ...], role: int) -> None:  # fmt: skip
    trust = TrustStore(bank.pki.root_der)
    trust.update_revocation(response.brand_crl_identifier, response.crls)
    with pytest.raises(ProtocolError) as caught:
        trust.verify_chain(der, chain, role, CertificateUsage.SIGNATURE)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_revocation_publishes_a_new_bci_that_refuses_the_certificate(bank: Bank) -> None:
    outcome, *_ = register_cardholder(bank, CARD, EXPIRY)
    assert outcome.certificate is not None
    before, old = _bci(bank)
    # Before: a trust store fed with the current BCI accepts the certificate.
    trust = TrustStore(bank.pki.root_der)
    trust.update_revocation(old.brand_crl_identifier, old.crls)
    trust.verify_chain(outcome.certificate.der, outcome.chain, CARDHOLDER, "signature")
    revoked = bank.ca.revoke(thumb=outcome.certificate.thumbprint)
    assert revoked.serial == outcome.certificate.serial_number
    after, response = _bci(bank)
    assert after == before + 1
    _refused_as_revoked(bank, response, outcome.certificate.der, outcome.chain, CARDHOLDER)
    # The CA's own trust store refuses it at once too: renewing it is refused.
    with pytest.raises(ProtocolError) as caught:
        bank.pki.trust.verify_chain(outcome.certificate.der, outcome.chain, CARDHOLDER, "signature")
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_revoked_certificate_cannot_be_renewed(ec_bank: Bank) -> None:
    first, _, key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert first.certificate is not None
    old = first.credentials(REQUESTERS, key)
    ec_bank.ca.revoke(serial=first.certificate.serial_number)
    session = start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL)
    request, state = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY, renewing=old
    )
    response = ec_bank.stub.Cert(request)
    from setcore.errors import PeerError

    with pytest.raises(PeerError) as caught:
        open_card_cert_response(response, state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_revoke_refusals(ec_bank: Bank) -> None:
    outcome, *_ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert outcome.certificate is not None
    ec_bank.ca.revoke(thumb=outcome.certificate.thumbprint)
    with pytest.raises(AlreadyRevoked):
        ec_bank.ca.revoke(thumb=outcome.certificate.thumbprint)
    with pytest.raises(UnknownCertificate):
        ec_bank.ca.revoke(thumb=b"\x01" * 32)
    with pytest.raises(UnknownCertificate):
        ec_bank.ca.revoke(serial=1)
    with pytest.raises(NotRevocable):
        ec_bank.ca.revoke(thumb=thumbprint(ec_bank.pki.root_der))


def test_revocation_in_another_process_reaches_the_serving_process(ec_bank: Bank) -> None:
    identity = MerchantIdentity("m-revoked-elsewhere", "Elsewhere Ltd")
    outcome, *_ = register_merchant(ec_bank, identity)
    assert outcome.signature is not None
    before, _ = _bci(ec_bank)
    serial = x509.load_der_x509_certificate(outcome.signature.der).serial_number
    script = (
        "import argparse, sys\n"
        "from cli import ca\n"
        "parser = argparse.ArgumentParser()\n"
        "ca.add_parser(parser.add_subparsers(dest='command'))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(ca.run(args))\n"
    )
    colon_hex = ":".join(f"{b:02X}" for b in serial.to_bytes((serial.bit_length() + 7) // 8))
    result = subprocess.run(
        [sys.executable, "-c", script, "ca", "revoke", "--config", str(ec_bank.config.base_dir /
         "setpay.toml"), "--serial", colon_hex],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        after, response = _bci(ec_bank)
        if after > before or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after == before + 1
    _refused_as_revoked(ec_bank, response, outcome.signature.der, outcome.chain, MERCHANT)
    with pytest.raises(ProtocolError) as caught:
        ec_bank.pki.trust.verify_chain(outcome.signature.der, outcome.chain, MERCHANT, "signature")
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_get_certificates_by_thumbprint(ec_bank: Bank) -> None:
    wanted = [ec_bank.pki.cca.signature_thumb, ec_bank.pki.gateway.signature_thumb, b"\x00" * 32]
    response = ec_bank.stub.GetCertificates(S.GetCertificatesRequest(thumbs=wanted))
    assert list(response.certificates) == [
        ec_bank.pki.cca.signature_cert,
        ec_bank.pki.gateway.signature_cert,
    ]
