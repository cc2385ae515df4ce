"""Backend-held keys drive cryptography's X.509 builders; nothing private leaves them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID

from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.errors import ConfigurationError
from setcore.pki.backend_key import (
    CERTIFICATE_PSS,
    BackendECKey,
    BackendRSAKey,
    backend_private_key,
)
from setcore.pki.issuance import sign_with_backend
from tests.hsm.forwarding import ForwardingBackend


class CountingBackend(ForwardingBackend):
    """A real software backend that records what it was asked to sign."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__(SoftwareBackend.ephemeral())
        self.signed: list[bytes] = []

    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        self.signed.append(data)
        return self.inner.sign(key, data)


@pytest.fixture(scope="module")
def counting() -> CountingBackend:
    return CountingBackend()


@pytest.fixture(scope="module", params=[KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048])
def ca_key(request: pytest.FixtureRequest, counting: CountingBackend) -> KeyHandle:
    algorithm: KeyAlgorithm = request.param
    return counting.generate(f"ca-{algorithm.value}", KeyUsage.CA_SIGNING, algorithm)


def _builder(public_key: object) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backend key test")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )


def test_certificate_builder_calls_back_into_backend_sign(
    counting: CountingBackend, ca_key: KeyHandle
) -> None:
    before = len(counting.signed)
    cert = sign_with_backend(_builder(ca_key.public_key), counting, ca_key)
    # Exactly one backend signature, over exactly the TBS bytes of the certificate.
    assert counting.signed[before:] == [cert.tbs_certificate_bytes]
    cert.verify_directly_issued_by(cert)


def test_crl_builder_calls_back_into_backend_sign(
    counting: CountingBackend, ca_key: KeyHandle
) -> None:
    private = backend_private_key(counting, ca_key)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crl")]))
        .last_update(now)
        .next_update(now + timedelta(days=1))
    )
    before = len(counting.signed)
    if isinstance(private, BackendRSAKey):
        crl = builder.sign(private, hashes.SHA256(), rsa_padding=CERTIFICATE_PSS)
    else:
        crl = builder.sign(private, hashes.SHA256())
    assert counting.signed[before:] == [crl.tbs_certlist_bytes]
    assert crl.is_signature_valid(ca_key.public_key)


def test_rsa_certificates_are_pss(counting: CountingBackend) -> None:
    key = counting.generate("pss-check", KeyUsage.CA_SIGNING, KeyAlgorithm.RSA_2048)
    cert = sign_with_backend(_builder(key.public_key), counting, key)
    assert cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
    assert isinstance(cert.signature_algorithm_parameters, padding.PSS)


def test_rsa_key_refuses_other_padding(counting: CountingBackend) -> None:
    key = counting.generate("pkcs1-refused", KeyUsage.CA_SIGNING, KeyAlgorithm.RSA_2048)
    private = backend_private_key(counting, key)
    with pytest.raises(ConfigurationError, match="CERTIFICATE_PSS"):
        _builder(key.public_key).sign(private, hashes.SHA256())  # PKCS#1 v1.5 by default
    other_pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    with pytest.raises(ConfigurationError, match="CERTIFICATE_PSS"):
        _builder(key.public_key).sign(private, hashes.SHA256(), rsa_padding=other_pss)


def test_ec_key_refuses_other_hash(counting: CountingBackend) -> None:
    key = counting.generate("ec-sha384", KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    with pytest.raises(ConfigurationError, match="SHA-256"):
        _builder(key.public_key).sign(backend_private_key(counting, key), hashes.SHA384())


def test_private_material_never_leaves(counting: CountingBackend) -> None:
    key = counting.generate("sealed", KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    private = backend_private_key(counting, key)
    assert isinstance(private, BackendECKey)
    with pytest.raises(ConfigurationError):
        private.private_numbers()
    with pytest.raises(ConfigurationError):
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(ConfigurationError):
        private.exchange(ec.ECDH(), ec.generate_private_key(ec.SECP256R1()).public_key())
    assert "sealed" in repr(private)


def test_only_signing_keys(counting: CountingBackend) -> None:
    kex = counting.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    with pytest.raises(ConfigurationError, match="cannot sign"):
        backend_private_key(counting, kex)
