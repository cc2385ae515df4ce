"""Checks done in software with ``cryptography``: verify, encapsulate, make certificates."""

from __future__ import annotations

import datetime
import math
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from hsm.base import KemAlgorithm, KeyHandle, PublicKey


def verify(public_key: PublicKey, signature: bytes, data: bytes) -> None:
    """Verify a backend signature the way X.509 verifiers do (raises InvalidSignature)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    else:
        public_key.verify(
            signature, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()
        )


def encapsulate(key: KeyHandle, kem: KemAlgorithm | None = None) -> tuple[bytes, bytes]:
    """(ciphertext, expected decapsulation) for a key transport to ``key``."""
    kem = kem or key.kem
    public_key = key.public_key
    if kem is KemAlgorithm.P256_HKDF_SHA256:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        ephemeral = ec.generate_private_key(ec.SECP256R1())
        point = ephemeral.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return point, ephemeral.exchange(ec.ECDH(), public_key)
    assert isinstance(public_key, rsa.RSAPublicKey)
    digest: hashes.HashAlgorithm = (
        hashes.SHA1() if kem is KemAlgorithm.RSA_OAEP_SHA1 else hashes.SHA256()
    )
    secret = secrets.token_bytes(32)
    return public_key.encrypt(secret, padding.OAEP(padding.MGF1(digest), digest, None)), secret


def certificate_for(
    public_key: PublicKey,
    name: str = "setpay test",
    *,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    """A DER certificate for ``public_key``, issued by a throwaway software CA, with
    ``extensions`` (each with whether it is critical)."""
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.DER)


def public_pem(public_key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, for openssl."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def rsa_key_with_exponent(exponent: int, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A real RSA key pair whose public exponent is ``exponent`` (``cryptography``
    generates only e = 3 or 65537)."""
    while True:
        base = rsa.generate_private_key(65537, bits).private_numbers()
        p, q = base.p, base.q
        phi = (p - 1) * (q - 1)
        if math.gcd(exponent, phi) == 1:
            break
    d = pow(exponent, -1, phi)
    return rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(exponent, p * q),
    ).private_key()  # fmt: skip
