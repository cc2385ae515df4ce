"""Certificates no brand CA issued: what a hostile peer puts into a bundle."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

# Filler in each junk certificate: large, so that keeping them would show, and still
# under setcore.pki.certificate's MAX_CERTIFICATE_BYTES (16 KB).
PADDING_BYTES = 12_000

_KEY = ec.generate_private_key(ec.SECP256R1())


def junk_certificate(padding: int = PADDING_BYTES) -> bytes:
    """A self-signed certificate under a fresh name, carrying ``padding`` bytes."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"junk-{os.urandom(6).hex()}")])
    now = datetime.now(UTC)
    octets = b"\x04\x82" + padding.to_bytes(2, "big") + b"A" * padding  # DER OCTET STRING
    filler = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), octets)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(filler, critical=False)
        .sign(_KEY, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)
