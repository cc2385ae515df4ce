"""Which key versions hold a certificate (``clients.identity.certified_versions``): what
the wallet signs a purchase or an inquiry with, and the merchant its messages, chooses
from. A renewal makes the new version before its certificate is stored."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clients.identity import certified_versions
from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage
from hsm.pkcs11 import Pkcs11Backend
from hsm.software import SoftwareBackend
from tests.hsm.test_planted_certificates import plant_certificate
from tests.hsm.testbed import session_softhsm

LABEL = "cardholder-signature"


def _certificate_for(key: KeyHandle) -> bytes:
    """A DER certificate of ``key``'s public half, issued by a throwaway CA."""
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a CA")])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{key.label} v{key.version}")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        .public_key(key.public_key).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .sign(issuer_key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


def test_certified_versions_newest_first_and_a_renewal_under_way_left_out() -> None:
    backend = SoftwareBackend.ephemeral()
    first, second, under_way = (
        backend.generate(LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256) for _ in range(3)
    )
    other = backend.generate("another-key", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    certificates = {key.version: _certificate_for(key) for key in (first, second)}
    for key in (first, second):
        backend.store_certificate(key, certificates[key.version])
    backend.store_certificate(other, _certificate_for(other))

    found = [(key.version, der) for key, der in certified_versions(backend, LABEL)]

    assert under_way.version > second.version > first.version
    assert found == [(v, certificates[v]) for v in (second.version, first.version)]
    assert list(certified_versions(backend, "no-such-key")) == []


@pytest.mark.integration
def test_a_certificate_planted_on_a_token_certifies_no_version(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    token = session_softhsm(tmp_path_factory).init_token()
    backend = Pkcs11Backend(token.config())
    try:
        first, under_way = (
            backend.generate(LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256) for _ in range(2)
        )
        certificate = _certificate_for(first)
        backend.store_certificate(first, certificate)
        # Copied under the renewal's id by someone without the PIN: it used to make that
        # version the newest certified one, signing with a key its certificate does not name.
        plant_certificate(token, backend.object_id(under_way), certificate)
        found = [(key.version, der) for key, der in certified_versions(backend, LABEL)]
    finally:
        backend.close()
        shutil.rmtree(token.directory, ignore_errors=True)
    assert found == [(first.version, certificate)]
