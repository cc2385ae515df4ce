"""Rules every key backend applies the same way: labels, usage, algorithms, certificates,
low-S ECDSA signatures.

Backends differ in where a key lives, not in what a key may do; keeping the rules here
means the software backend (the test double) and the PKCS#11 backend cannot drift apart.
Errors raised are from ``hsm.errors``.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyHandle, KeyUsage, PrivateKey, PublicKey
from hsm.errors import (
    InvalidCertificate,
    InvalidKeyLabel,
    InvalidKeyVersion,
    KeyNotFound,
    KeyUsageError,
    UnsupportedAlgorithm,
)

#: A label names a directory in the software keystore and a CKA_LABEL on a token, so it
#: is restricted to characters that are safe in both and in logs. 64 characters: long
#: enough for "gateway-kex-2025q3" style names, short enough for any token's label field.
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: RSA public exponent for generated keys: the only one every token and verifier accepts.
RSA_PUBLIC_EXPONENT = 65537

#: PSS salt length: the digest length (SHA-256), fixed so software and token agree.
PSS_SALT_LENGTH = 32

#: SEC1 uncompressed P-256 point: 0x04 || X (32 bytes) || Y (32 bytes).
P256_POINT_LENGTH = 65

#: The order n of P-256's base point (SEC 2), the only ECDSA curve admitted here: an s
#: above n // 2 is the high one of the pair that verifies. The one definition:
#: ``setcore.signed``, which refuses the high one and normalizes again what it signs,
#: takes it and ``low_s_signature`` from here (setcore may import hsm, never the reverse).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

#: The ``cryptography`` classes behind ``hsm.base.PrivateKey`` / ``PublicKey``, for isinstance.
PRIVATE_KEY_TYPES = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
PUBLIC_KEY_TYPES = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)


def as_bytes(data: object, what: str) -> bytes:
    """``data`` as ``bytes``: a bytes-like object is copied, anything else is a TypeError.

    Every backend takes the same inputs. python-pkcs11 in particular takes any other
    iterable for a multi-part operation and answers with a generator that would run on
    the token later, outside the session lease and the module lock.
    """
    if isinstance(data, bytes):
        return data
    try:
        return bytes(memoryview(data))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be bytes, not {type(data).__name__}") from None


def check_label(label: str) -> None:
    """Raise ``InvalidKeyLabel`` unless ``label`` matches ``LABEL_PATTERN``."""
    if not LABEL_PATTERN.fullmatch(label):
        raise InvalidKeyLabel(
            f"invalid key label {label[:80]!r}: use 1-64 of A-Z a-z 0-9 . _ - "
            "(starting with a letter or digit)"
        )


def check_version(version: int | None) -> None:
    """Raise ``InvalidKeyVersion`` unless ``version`` is None or a positive ``int``.

    A bool is refused although Python counts it an int: ``True`` would otherwise find
    version 1 (``True == 1`` and they hash alike), and a string would reach ``<``.
    """
    if version is None:
        return
    if type(version) is not int:
        raise InvalidKeyVersion(
            f"invalid key version of type {type(version).__name__}: use an int from 1"
        )
    if version < 1:
        raise InvalidKeyVersion(f"invalid key version {version}: versions start at 1")


def check_combination(usage: KeyUsage, algorithm: KeyAlgorithm) -> None:
    """Raise ``UnsupportedAlgorithm`` when a key of ``algorithm`` cannot serve ``usage``.

    Ed25519 has no key transport here (X25519 is a different key), so it only signs.
    """
    if usage.can_decapsulate and algorithm is KeyAlgorithm.ED25519:
        raise UnsupportedAlgorithm(
            f"{algorithm.value} keys cannot have usage {usage.value}: "
            "use ec-p256 or an RSA key for key transport"
        )


def default_kem(usage: KeyUsage, algorithm: KeyAlgorithm) -> KemAlgorithm | None:
    """The key-transport algorithm a software-held key accepts (None for signing keys)."""
    if not usage.can_decapsulate:
        return None
    if algorithm is KeyAlgorithm.EC_P256:
        return KemAlgorithm.P256_HKDF_SHA256
    return KemAlgorithm.RSA_OAEP_SHA256


def algorithm_of_private(private_key: PrivateKey) -> KeyAlgorithm:
    """The key type of a private key offered for import; ``UnsupportedAlgorithm`` if none
    (``algorithm_to_hold``)."""
    return algorithm_to_hold(private_key.public_key())


def algorithm_to_hold(public_key: PublicKey) -> KeyAlgorithm:
    """The key type of a key coming into a backend (import, adopt); ``UnsupportedAlgorithm``
    for one off the allow-list, an RSA key among them unless its public exponent is
    ``RSA_PUBLIC_EXPONENT``.

    setcore refuses any other exponent from everyone (``setcore.signed``): a key held with
    one would be refused only once used, a CA's every certificate, a bank key at its start.
    Keys already held are read with ``algorithm_of_public`` alone, so one imported before
    this check is still listed, and can be deleted.
    """
    algorithm = algorithm_of_public(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        exponent = public_key.public_numbers().e
        if exponent != RSA_PUBLIC_EXPONENT:
            # A long one is named by its size: its digits would read like a card number
            # to a log scanner (32 bits: at most 10 digits).
            shown = exponent if exponent.bit_length() <= 32 else f"of {exponent.bit_length()} bits"
            raise UnsupportedAlgorithm(
                f"RSA public exponent {shown} is not allowed: use e = {RSA_PUBLIC_EXPONENT}, "
                "the only one setpay signs and verifies with"
            )
    return algorithm


def algorithm_of_public(public_key: PublicKey) -> KeyAlgorithm:
    """The key type of a public key; ``UnsupportedAlgorithm`` when not on the allow-list."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return KeyAlgorithm.EC_P256
        raise UnsupportedAlgorithm(f"EC curve {public_key.curve.name} is not allowed: use P-256")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyAlgorithm.ED25519
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size == 2048:
            return KeyAlgorithm.RSA_2048
        if public_key.key_size == 3072:
            return KeyAlgorithm.RSA_3072
        raise UnsupportedAlgorithm(
            f"RSA-{public_key.key_size} is not allowed: use RSA-2048 or RSA-3072"
        )
    raise UnsupportedAlgorithm(f"key type {type(public_key).__name__} is not allowed")


def check_same_key(held: KeyHandle, given: KeyHandle) -> None:
    """Raise ``KeyNotFound`` unless the caller's handle names the key the backend holds.

    A label and version can name two keys in turn: delete every version of a label,
    generate it again, and version 1 is a new key. A handle from before still names the
    old one; serving it with the new key would return signatures, and accept
    certificates, for a public key that is not the handle's.
    """
    if given.public_key is not held.public_key and given.public_key != held.public_key:
        raise KeyNotFound(
            f"key {given.label!r} v{given.version} was deleted and made again since this "
            "handle was taken: get the key again"
        )


def require_sign(key: KeyHandle) -> None:
    """Raise ``KeyUsageError`` unless the key's usage permits signing."""
    if not key.usage.can_sign:
        raise KeyUsageError(
            f"key {key.label!r} v{key.version} has usage {key.usage.value}: it may not sign"
        )


def require_decapsulate(key: KeyHandle, kem: KemAlgorithm) -> None:
    """Raise unless the key may decapsulate with ``kem``.

    ``KeyUsageError`` when its usage forbids decapsulation; ``UnsupportedAlgorithm`` when
    the key accepts a different key-transport algorithm (no silent downgrade).
    """
    if not key.usage.can_decapsulate:
        raise KeyUsageError(
            f"key {key.label!r} v{key.version} has usage {key.usage.value}: it may not decapsulate"
        )
    if key.kem is not kem:
        accepted = key.kem.value if key.kem is not None else "nothing"
        raise UnsupportedAlgorithm(
            f"key {key.label!r} v{key.version} accepts {accepted}, not {kem.value}"
        )


def low_s_signature(r: int, s: int) -> bytes:
    """The DER ECDSA P-256 signature (r, s) with the low s (s <= n/2) of the two that verify.

    Whoever made it (OpenSSL, a token) picks either s; (r, n - s) is as valid, and every
    backend returns the low one, as ``KeyBackend.sign`` promises (setcore refuses the high
    one as a malleable twin).
    """
    return encode_dss_signature(r, min(s, P256_ORDER - s))


def public_key_der(public_key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER: the canonical form for comparing public keys."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_certificate(key: KeyHandle, der: bytes) -> x509.Certificate:
    """Parse a DER certificate and check it certifies ``key``; ``InvalidCertificate`` if not.

    Refusing a certificate for another key keeps a slip in the CA or the CLI from pairing
    a key with someone else's identity.
    """
    try:
        certificate = x509.load_der_x509_certificate(der)
        certified = certificate.public_key()
    except ValueError as exc:
        raise InvalidCertificate(
            f"certificate for key {key.label!r} v{key.version} is not DER X.509"
        ) from exc
    if not isinstance(certified, PUBLIC_KEY_TYPES) or public_key_der(certified) != public_key_der(
        key.public_key
    ):
        raise InvalidCertificate(
            f"certificate does not certify key {key.label!r} v{key.version}: its public key differs"
        )
    return certificate
