"""How setpay keys look as PKCS#11 objects, and how to read them back.

One key version on a token is up to four objects sharing one CKA_ID:

    private key   CKA_LABEL=label, CKA_ID=16 random bytes new for each version
                  (``new_key_id``), CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not
                  CKA_EXTRACTABLE; CKA_SIGN or CKA_DECRYPT/CKA_DERIVE by usage and
                  nothing else (no unwrap, no sign-recover)
    public key    same label and id (EC keys keep their point only here)
    data object   CKA_APPLICATION "setpay", CKA_LABEL=label, CKA_VALUE = JSON metadata:
                  label, version, usage, algorithm, id (data objects have no CKA_ID),
                  public: SHA-256 of the public key's SubjectPublicKeyInfo DER
    certificate   X.509, same label and id, once one is stored; a public object, so
                  only one that certifies the key's own public key is the key's
                  (``certificates_of``)

Only private keys that can never leave the token are used (CKA_SENSITIVE true and
CKA_EXTRACTABLE false, both read back from the token; a token that does not report them
is taken at its worst): "private keys never leave the key backend" must hold for keys
other tools made, too. The rest are skipped, and ``adopt`` refuses them. Nor is a
private key object that is a public object (CKA_PRIVATE false) ever looked at: anyone
reaching the token without its PIN can create one, from a value they know, under a
setpay key's CKA_ID or a label of their choosing (``search_template``).

This module builds templates and decodes attributes; it opens no sessions.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm as CryptographyUnsupported
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyHandle, KeyUsage, PrivateKey, PublicKey
from hsm.errors import InvalidCertificate, UnsupportedAlgorithm
from hsm.policy import (
    RSA_PUBLIC_EXPONENT,
    algorithm_of_public,
    check_certificate,
    public_key_der,
)

#: CKA_APPLICATION of setpay's metadata data objects.
APPLICATION = "setpay"

#: Metadata format written and understood by this code. ``public`` came later as an
#: optional field, not a new format: setpay versions before it read these keys as before.
METADATA_FORMAT = 1

#: CKA_ID length: 16 random bytes make a collision between key versions negligible
#: while staying short enough for every tool that prints ids.
KEY_ID_BYTES = 16

#: DER of the named-curve parameters: OID 1.2.840.10045.3.1.7 (P-256) and 1.3.101.112
#: (Ed25519). Tokens also report Ed25519 as PrintableString "edwards25519" (PKCS#11 3.0).
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
ED25519_PARAMS = bytes.fromhex("06032b6570")
ED25519_PARAMS_NAMED = b"\x13\x0c" + b"edwards25519"

#: Attributes read from each private key when the catalog is rebuilt.
PRIVATE_KEY_ATTRIBUTES = (
    Attribute.ID,
    Attribute.LABEL,
    Attribute.KEY_TYPE,
    Attribute.SIGN,
    Attribute.DECRYPT,
    Attribute.DERIVE,
    Attribute.EC_PARAMS,
    Attribute.MODULUS,
    Attribute.PUBLIC_EXPONENT,
    Attribute.PRIVATE,
    Attribute.SENSITIVE,
    Attribute.EXTRACTABLE,
)
PUBLIC_KEY_ATTRIBUTES = (
    Attribute.ID,
    Attribute.KEY_TYPE,
    Attribute.EC_PARAMS,
    Attribute.EC_POINT,
    Attribute.MODULUS,
    Attribute.PUBLIC_EXPONENT,
)

#: Bytes of the SHA-256 of a public key that metadata records (``public``).
PUBLIC_FINGERPRINT_BYTES = 32

_X962 = serialization.Encoding.X962
_UNCOMPRESSED = serialization.PublicFormat.UncompressedPoint
_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw
_RAW_PRIVATE = serialization.PrivateFormat.Raw
_NO_ENCRYPTION = serialization.NoEncryption()


@dataclass(frozen=True)
class TokenKey:
    """A key version found on the token: its handle, its CKA_ID, and whether setpay made it."""

    handle: KeyHandle
    ck_id: bytes
    adopted: bool


@dataclass(frozen=True)
class KeyPairTemplate:
    """Everything ``C_GenerateKeyPair`` needs for one setpay key version."""

    key_type: KeyType
    key_length: int | None
    public: dict[Attribute, Any]
    private: dict[Attribute, Any]


def new_key_id() -> bytes:
    """A fresh CKA_ID for a new key version: random, so it never names an earlier key.

    Delete every version of a label and generate it again, and version 1 is a new key.
    An id derived from label and version would be the old key's id too: a process whose
    catalog still holds the old key would find the new one by it and sign with a key
    its handle does not name, and objects the old key left behind (a certificate another
    tool kept, a half-made pair) would be taken for the new key's.
    """
    return secrets.token_bytes(KEY_ID_BYTES)


def capability_attributes(usage: KeyUsage, algorithm: KeyAlgorithm) -> dict[Attribute, Any]:
    """CKA_SIGN / CKA_DECRYPT / CKA_DERIVE for a private key: exactly what the usage allows."""
    decapsulates = usage.can_decapsulate
    return {
        Attribute.SIGN: usage.can_sign,
        Attribute.DECRYPT: decapsulates and algorithm.is_rsa,
        Attribute.DERIVE: decapsulates and algorithm is KeyAlgorithm.EC_P256,
        Attribute.UNWRAP: False,
        Attribute.SIGN_RECOVER: False,
    }


def private_key_attributes(
    label: str, ck_id: bytes, usage: KeyUsage, algorithm: KeyAlgorithm
) -> dict[Attribute, Any]:
    """Attributes every setpay private key has on a token."""
    return {
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.LABEL: label,
        Attribute.ID: ck_id,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        **capability_attributes(usage, algorithm),
    }


def public_key_attributes(
    label: str, ck_id: bytes, usage: KeyUsage, algorithm: KeyAlgorithm
) -> dict[Attribute, Any]:
    """Attributes every setpay public key has on a token."""
    return {
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.LABEL: label,
        Attribute.ID: ck_id,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.VERIFY: usage.can_sign,
        Attribute.ENCRYPT: usage.can_decapsulate and algorithm.is_rsa,
        Attribute.DERIVE: False,
        Attribute.WRAP: False,
    }


def keypair_template(
    label: str, ck_id: bytes, usage: KeyUsage, algorithm: KeyAlgorithm
) -> KeyPairTemplate:
    """The key type, size and templates to generate one key version on the token."""
    public = public_key_attributes(label, ck_id, usage, algorithm)
    private = private_key_attributes(label, ck_id, usage, algorithm)
    if algorithm is KeyAlgorithm.EC_P256:
        public[Attribute.EC_PARAMS] = P256_PARAMS
        return KeyPairTemplate(KeyType.EC, None, public, private)
    if algorithm is KeyAlgorithm.ED25519:
        public[Attribute.EC_PARAMS] = ED25519_PARAMS
        return KeyPairTemplate(KeyType.EC_EDWARDS, None, public, private)
    public[Attribute.PUBLIC_EXPONENT] = _int_bytes(RSA_PUBLIC_EXPONENT)
    return KeyPairTemplate(KeyType.RSA, algorithm.rsa_bits, public, private)


def import_attributes(
    label: str, ck_id: bytes, usage: KeyUsage, private_key: PrivateKey
) -> tuple[dict[Attribute, Any], dict[Attribute, Any]]:
    """Private and public object templates that carry an imported key onto the token."""
    algorithm = algorithm_of_public(private_key.public_key())
    private = private_key_attributes(label, ck_id, usage, algorithm)
    public = public_key_attributes(label, ck_id, usage, algorithm)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        point = private_key.public_key().public_bytes(_X962, _UNCOMPRESSED)
        private.update(
            {
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.EC_PARAMS: P256_PARAMS,
                Attribute.VALUE: private_key.private_numbers().private_value.to_bytes(32, "big"),
            }
        )
        public.update(
            {
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.EC_PARAMS: P256_PARAMS,
                Attribute.EC_POINT: _der_octet_string(point),
            }
        )
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        raw_public = private_key.public_key().public_bytes(_RAW, _RAW_PUBLIC)
        private.update(
            {
                Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                Attribute.EC_PARAMS: ED25519_PARAMS,
                Attribute.VALUE: private_key.private_bytes(_RAW, _RAW_PRIVATE, _NO_ENCRYPTION),
            }
        )
        public.update(
            {
                Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                Attribute.EC_PARAMS: ED25519_PARAMS,
                Attribute.EC_POINT: _der_octet_string(raw_public),
            }
        )
    else:
        numbers = private_key.private_numbers()
        public_numbers = numbers.public_numbers
        private.update(
            {
                Attribute.KEY_TYPE: KeyType.RSA,
                Attribute.MODULUS: _int_bytes(public_numbers.n),
                Attribute.PUBLIC_EXPONENT: _int_bytes(public_numbers.e),
                Attribute.PRIVATE_EXPONENT: _int_bytes(numbers.d),
                Attribute.PRIME_1: _int_bytes(numbers.p),
                Attribute.PRIME_2: _int_bytes(numbers.q),
                Attribute.EXPONENT_1: _int_bytes(numbers.dmp1),
                Attribute.EXPONENT_2: _int_bytes(numbers.dmq1),
                Attribute.COEFFICIENT: _int_bytes(numbers.iqmp),
            }
        )
        public.update(
            {
                Attribute.KEY_TYPE: KeyType.RSA,
                Attribute.MODULUS: _int_bytes(public_numbers.n),
                Attribute.PUBLIC_EXPONENT: _int_bytes(public_numbers.e),
            }
        )
    return private, public


def metadata_attributes(
    label: str,
    version: int,
    usage: KeyUsage,
    algorithm: KeyAlgorithm,
    ck_id: bytes,
    public_key: PublicKey | None,
) -> dict[Attribute, Any]:
    """The data object recording a key version's label, version, usage and public key.

    ``public_key`` None while the key is being made: the metadata comes first (see
    ``hsm.token_creation``), and vouches for a public key once it is known.
    """
    value = {
        "format": METADATA_FORMAT,
        "label": label,
        "version": version,
        "usage": usage.value,
        "algorithm": algorithm.value,
        "id": ck_id.hex(),
        "public": None if public_key is None else public_fingerprint(public_key).hex(),
    }
    return {
        Attribute.CLASS: ObjectClass.DATA,
        Attribute.APPLICATION: APPLICATION,
        Attribute.LABEL: label,
        Attribute.VALUE: json.dumps(value, sort_keys=True).encode(),
        Attribute.TOKEN: True,
        # Private: only a logged-in user may read or change which usage a key has.
        Attribute.PRIVATE: True,
    }


def certificate_attributes(
    label: str, ck_id: bytes, der: bytes, subject: bytes
) -> dict[Attribute, Any]:
    """An X.509 certificate object stored beside a key version."""
    return {
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.LABEL: label,
        Attribute.ID: ck_id,
        Attribute.SUBJECT: subject,
        Attribute.VALUE: der,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
    }


def certificates_of(key: KeyHandle, values: Iterable[bytes]) -> list[bytes]:
    """The distinct DER certificates among ``values`` whose public key is ``key``'s.

    Certificates are public objects: anyone reaching the token without its PIN can put
    one under a key's CKA_ID. One for another key would pair this key with another
    identity, or make a version the CA never certified look certified; it is no
    certificate of this key's, so it is skipped, as anything that is not X.509 is. One
    for this key's own public key the token cannot tell from the CA's: the caller decides.
    """
    own: list[bytes] = []
    for der in values:
        try:
            check_certificate(key, der)
        except (InvalidCertificate, CryptographyUnsupported):
            # cryptography parses lazily: a key type it does not know fails only here.
            continue
        if der not in own:
            own.append(der)  # copies of one certificate are one certificate
    return own


def parse_metadata(value: bytes) -> dict[str, Any] | None:
    """Decode a setpay data object's value; None when it is not one we understand."""
    try:
        meta = json.loads(value)
        if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
            return None
        public = meta.get("public")
        if public is not None:
            public = bytes.fromhex(public)
            if len(public) != PUBLIC_FINGERPRINT_BYTES:
                return None
        return {
            "label": str(meta["label"]),
            "version": int(meta["version"]),
            "usage": KeyUsage(meta["usage"]),
            "algorithm": KeyAlgorithm(meta["algorithm"]),
            "id": bytes.fromhex(meta["id"]),
            "public": public,
        }
    except (ValueError, KeyError, TypeError):
        return None


def public_fingerprint(public_key: PublicKey) -> bytes:
    """SHA-256 of the public key's SubjectPublicKeyInfo DER, as metadata records it."""
    return hashlib.sha256(public_key_der(public_key)).digest()


def holds_public_key(public: dict[Attribute, Any], fingerprint: bytes) -> bool:
    """True if the public key object holds the key with this fingerprint (``public``)."""
    key = public_object_key(public)
    return key is not None and public_fingerprint(key) == fingerprint


def search_template(object_class: ObjectClass, ck_id: bytes | None = None) -> dict[Attribute, Any]:
    """Search template for the objects of a class setpay may use (under ``ck_id``).

    Private keys only among private objects (CKA_PRIVATE true), which only a logged-in
    user can create: a private key object made without the PIN is a public object, may
    hold a value its maker knows, and under a setpay key's CKA_ID would make every
    lookup by that id find two keys. Every search for key objects uses this template,
    so such an object is neither listed, nor counted, nor used, nor destroyed.
    """
    template: dict[Attribute, Any] = {Attribute.CLASS: object_class}
    if ck_id is not None:
        template[Attribute.ID] = ck_id
    if object_class is ObjectClass.PRIVATE_KEY:
        template[Attribute.PRIVATE] = True
    return template


def public_object_template(ck_id: bytes) -> dict[Attribute, Any]:
    """Search template for private key objects under ``ck_id`` that ``search_template``
    skips (public objects), to say why a key there is not used."""
    return {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: ck_id, Attribute.PRIVATE: False}


def stays_on_token(private: dict[Attribute, Any]) -> bool:
    """True if the private key's value can never be read off the token (see above).

    CKA_PRIVATE true too: a key made without the PIN may have been made from a value
    its maker holds off the token.
    """
    sensitive = private.get(Attribute.SENSITIVE)
    extractable = private.get(Attribute.EXTRACTABLE)
    return made_logged_in(private) and sensitive is True and extractable is False


def made_logged_in(private: dict[Attribute, Any]) -> bool:
    """True if the private key object is a private object (``search_template``)."""
    return private.get(Attribute.PRIVATE) is True


def kem_for(
    usage: KeyUsage, algorithm: KeyAlgorithm, rsa_kem: KemAlgorithm | None
) -> KemAlgorithm | None:
    """The key transport a token key accepts: ECDH for P-256, the token's best OAEP for RSA."""
    if not usage.can_decapsulate:
        return None
    if algorithm is KeyAlgorithm.EC_P256:
        return KemAlgorithm.P256_HKDF_SHA256
    return rsa_kem


def describe_key(
    private: dict[Attribute, Any], public: dict[Attribute, Any] | None
) -> tuple[PublicKey, KeyAlgorithm] | None:
    """Public key and algorithm of a private key object; None if unreadable or not allowed."""
    public_key = _public_key(private, public)
    if public_key is None:
        return None
    try:
        return public_key, algorithm_of_public(public_key)
    except UnsupportedAlgorithm:
        return None


def _public_key(
    private: dict[Attribute, Any], public: dict[Attribute, Any] | None
) -> PublicKey | None:
    """The public half, from the private object (RSA) or the matching public object (EC)."""
    key_type = private.get(Attribute.KEY_TYPE)
    if key_type == KeyType.RSA:
        return _rsa_public_key(private)
    if public is None or public.get(Attribute.KEY_TYPE) != key_type:
        return None
    return public_object_key(public)


def public_object_key(public: dict[Attribute, Any]) -> PublicKey | None:
    """The key a public key object holds; None if unreadable or of a type setpay skips."""
    key_type = public.get(Attribute.KEY_TYPE)
    if key_type == KeyType.RSA:
        return _rsa_public_key(public)
    try:
        params, point = public.get(Attribute.EC_PARAMS), public.get(Attribute.EC_POINT)
        if not isinstance(point, bytes):
            return None
        if key_type == KeyType.EC and params == P256_PARAMS:
            raw = _unwrap_point(point, 65)
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        if key_type == KeyType.EC_EDWARDS and params in (ED25519_PARAMS, ED25519_PARAMS_NAMED):
            return ed25519.Ed25519PublicKey.from_public_bytes(_unwrap_point(point, 32))
    except ValueError:
        return None
    return None


def _rsa_public_key(attrs: dict[Attribute, Any]) -> PublicKey | None:
    modulus, exponent = attrs.get(Attribute.MODULUS), attrs.get(Attribute.PUBLIC_EXPONENT)
    if not modulus or not exponent:
        return None
    try:
        return rsa.RSAPublicNumbers(
            int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")
        ).public_key()
    except ValueError:
        return None


def _unwrap_point(point: bytes, raw_length: int) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING on most tokens, the raw point on a few."""
    if len(point) == raw_length + 2 and point[0] == 0x04 and point[1] == raw_length:
        return point[2:]
    if len(point) == raw_length:
        return point
    raise ValueError("unexpected CKA_EC_POINT length")


def _der_octet_string(raw: bytes) -> bytes:
    # Points here are at most 65 bytes, so the short length form is always right.
    return bytes([0x04, len(raw)]) + raw


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
