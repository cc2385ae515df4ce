"""High-S ECDSA for the low-S tests: a backend that returns it, a certificate's twin.

``KeyBackend.sign`` promises low-S, and every backend keeps it (``tests/hsm/test_low_s``),
so setcore's own normalization (``setcore.signed.low_s``) never has anything to do with a
real backend. ``HighSBackend`` breaks the promise, so that a test can show setcore
still signs low-S, and would notice if its normalization stopped working.
``certificate_twin`` is what anyone can make of a certificate setpay issued.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from hsm.base import KeyHandle, SignatureAlgorithm
from tests.hsm.forwarding import ForwardingBackend

# The order n of P-256's base point (SEC 2), stated here apart from the code under test.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# DER of the AlgorithmIdentifier ecdsa-with-SHA256, parameters absent (RFC 5758 3.2).
ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def s_of(der: bytes) -> int:
    """The s of a DER ECDSA signature."""
    return int(decode_dss_signature(der)[1])


def is_high_s(der: bytes) -> bool:
    """Whether a DER ECDSA P-256 signature's s is in the upper half, above n/2."""
    return s_of(der) > P256_ORDER // 2


def high_s(der: bytes) -> bytes:
    """The high-S one of the two DER signatures (r, s) and (r, n - s)."""
    r, s = decode_dss_signature(der)
    return der if is_high_s(der) else encode_dss_signature(r, P256_ORDER - s)


class HighSBackend(ForwardingBackend):
    """Every ECDSA signature of ``inner`` turned into its high-S twin (still valid)."""

    name = "high-s"

    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        signature = self.inner.sign(key, data)
        if key.signature_algorithm is SignatureAlgorithm.ECDSA_P256_SHA256:
            return high_s(signature)
        return signature


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _twin_of_signature(signature: bytes) -> bytes:
    r, s = decode_dss_signature(signature)
    return encode_dss_signature(r, P256_ORDER - s)


def certificate_twin(der: bytes) -> bytes:
    """The certificate with (r, n - s) for its ECDSA signature: other DER, same contents,
    valid under the same issuer. No key needed."""
    cert = x509.load_der_x509_certificate(der)
    value = _twin_of_signature(cert.signature)
    body = cert.tbs_certificate_bytes + ECDSA_WITH_SHA256 + _der(0x03, b"\x00" + value)
    return _der(0x30, body)


def crl_twin(der: bytes) -> bytes:
    """The CRL with (r, n - s) for its ECDSA signature, as ``certificate_twin``."""
    crl = x509.load_der_x509_crl(der)
    value = _twin_of_signature(crl.signature)
    body = crl.tbs_certlist_bytes + ECDSA_WITH_SHA256 + _der(0x03, b"\x00" + value)
    return _der(0x30, body)
