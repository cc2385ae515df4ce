"""How setpay keys look as PKCS#11 objects, and how to read them back.

One key version on a token is up to four objects sharing one CKA_ID:

    private key   CKA_LABEL=label, CKA_ID=16 random bytes new for each version
                  (``new_key_id``), CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not
                  CKA_EXTRACTABLE; CKA_SIGN or CKA_DECRYPT/CKA_DERIVE by usage and
                  nothing else (no unwrap, no sign-recover)
    public key    same label and id (EC keys keep their point only here)
    data object   CKA_APPLICATION "setpay", CKA_LABEL=label, CKA_VALUE = JSON metadata:
                  label, version, usage, algorithm, id (data objects have no CKA_ID)
    certificate   X.509, same label and id, once one is stored

Only private keys that can never leave the token are used (CKA_SENSITIVE true and
CKA_EXTRACTABLE false, both read back from the token; a token that does not report them
is taken at its worst): "private keys never leave the key backend" must hold for keys
other tools made, too. The rest are skipped, and ``adopt`` refuses them.

Private keys without a setpay data object (made by ``pkcs11-tool`` or another tool) are
adopted when the capabilities their key type can use make the usage unambiguous: for
P-256, CKA_SIGN without CKA_DERIVE means ``signature`` and the reverse ``key-exchange``;
for RSA the same with CKA_DECRYPT; Ed25519 only signs. (SoftHSM turns CKA_DECRYPT and
CKA_UNWRAP on by default, and pkcs11-tool cannot turn them off, so on an EC key they are
ignored: no EC mechanism decrypts.) Anything else, an algorithm off the allow-list, a
label already used by setpay keys, or a label another such key carries too, is left
alone until adopted explicitly (``Pkcs11Backend.adopt``).

Inferred keys are version 1 under their CKA_LABEL (or ``id-HEX`` when it is unusable).

A CKA_ID held by two private keys or two public keys (another tool may make them so)
ties no key to its objects: neither key is used, each needs an id of its own first.

This module builds templates and decodes attributes; it opens no sessions.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyHandle, KeyUsage, PrivateKey, PublicKey
from hsm.errors import UnsupportedAlgorithm
from hsm.policy import LABEL_PATTERN, RSA_PUBLIC_EXPONENT, algorithm_of_public

#: CKA_APPLICATION of setpay's metadata data objects.
APPLICATION = "setpay"

#: Metadata format written and understood by this code.
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
    Attribute.SENSITIVE,
    Attribute.EXTRACTABLE,
)
PUBLIC_KEY_ATTRIBUTES = (Attribute.ID, Attribute.KEY_TYPE, Attribute.EC_PARAMS, Attribute.EC_POINT)

_log = logging.getLogger(__name__)

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
    label: str, version: int, usage: KeyUsage, algorithm: KeyAlgorithm, ck_id: bytes
) -> dict[Attribute, Any]:
    """The data object recording a key version's label, version and usage."""
    value = {
        "format": METADATA_FORMAT,
        "label": label,
        "version": version,
        "usage": usage.value,
        "algorithm": algorithm.value,
        "id": ck_id.hex(),
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


def parse_metadata(value: bytes) -> dict[str, Any] | None:
    """Decode a setpay data object's value; None when it is not one we understand."""
    try:
        meta = json.loads(value)
        if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
            return None
        return {
            "label": str(meta["label"]),
            "version": int(meta["version"]),
            "usage": KeyUsage(meta["usage"]),
            "algorithm": KeyAlgorithm(meta["algorithm"]),
            "id": bytes.fromhex(meta["id"]),
        }
    except (ValueError, KeyError, TypeError):
        return None


def build_catalog(
    metadata: Iterable[dict[str, Any]],
    private_keys: Iterable[dict[Attribute, Any]],
    public_keys: Iterable[dict[Attribute, Any]],
    rsa_kem: KemAlgorithm | None,
) -> list[TokenKey]:
    """Key versions from the attributes of the token's data, private and public objects."""
    by_id = {meta["id"]: meta for meta in metadata}
    private_keys, public_keys = list(private_keys), list(public_keys)
    shared = shared_ids(private_keys, public_keys)
    publics = {attrs.get(Attribute.ID, b""): attrs for attrs in public_keys}
    own: list[TokenKey] = []
    foreign: list[TokenKey] = []
    for attrs in private_keys:
        if not stays_on_token(attrs):
            continue
        ck_id = attrs.get(Attribute.ID, b"")
        if ck_id in shared:
            # Which public key is this key's, and what would deleting it destroy? The id
            # cannot say, so neither key is used until each has an id of its own.
            _log.warning(
                "keys sharing CKA_ID %s are not used: give each its own CKA_ID, then adopt",
                ck_id.hex() or "(empty)",
            )
            continue
        described = describe_key(attrs, publics.get(ck_id))
        if described is None:
            continue
        public_key, algorithm = described
        meta = by_id.get(ck_id) if ck_id else None
        if meta is not None:
            if meta["algorithm"] is not algorithm:
                continue
            label, version, usage = meta["label"], meta["version"], meta["usage"]
        else:
            adopted_usage = _usage_from_attributes(attrs, algorithm)
            if adopted_usage is None:
                continue
            label, version, usage = _adopted_label(attrs, ck_id), 1, adopted_usage
        kem = kem_for(usage, algorithm, rsa_kem)
        handle = KeyHandle(label, version, usage, algorithm, public_key, kem)
        (own if meta is not None else foreign).append(TokenKey(handle, ck_id, meta is None))
    own_labels = {key.handle.label for key in own}
    held = Counter(key.handle.label for key in foreign)
    for key in foreign:
        # One adopted key per label, and never beside setpay's own versions of that label:
        # versions must mean the same thing everywhere. A label two foreign keys carry
        # names neither: the token's listing order is no choice (``adopt`` makes one).
        if key.handle.label in own_labels:
            continue
        if held[key.handle.label] > 1:
            _log.warning(
                "%d keys made by another tool carry label %r: none is used until one is "
                "adopted by its CKA_ID",
                held[key.handle.label],
                key.handle.label,
            )
            held[key.handle.label] = 0  # one warning per label
            continue
        if held[key.handle.label] == 1:
            own.append(key)
    own.sort(key=lambda key: (key.handle.label, key.handle.version))
    return own


def shared_ids(
    private_keys: Iterable[dict[Attribute, Any]], public_keys: Iterable[dict[Attribute, Any]]
) -> set[bytes]:
    """CKA_IDs held by more than one private key or more than one public key."""
    privates = Counter(attrs.get(Attribute.ID, b"") for attrs in private_keys)
    publics = Counter(attrs.get(Attribute.ID, b"") for attrs in public_keys)
    return {ck_id for ck_id, count in (privates | publics).items() if count > 1}


def stays_on_token(private: dict[Attribute, Any]) -> bool:
    """True if the private key's value can never be read off the token (see above)."""
    sensitive = private.get(Attribute.SENSITIVE)
    extractable = private.get(Attribute.EXTRACTABLE)
    return sensitive is True and extractable is False


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


def _usage_from_attributes(attrs: dict[Attribute, Any], algorithm: KeyAlgorithm) -> KeyUsage | None:
    signs = bool(attrs.get(Attribute.SIGN))
    if algorithm is KeyAlgorithm.EC_P256:
        opens = bool(attrs.get(Attribute.DERIVE))
    elif algorithm.is_rsa:
        opens = bool(attrs.get(Attribute.DECRYPT))
    else:
        opens = False
    if signs and not opens:
        return KeyUsage.SIGNATURE
    if opens and not signs:
        return KeyUsage.KEY_EXCHANGE
    return None


def _adopted_label(attrs: dict[Attribute, Any], ck_id: bytes) -> str:
    label = attrs.get(Attribute.LABEL) or ""
    if isinstance(label, str) and LABEL_PATTERN.fullmatch(label):
        return label
    return f"id-{ck_id.hex()}"[:64]


def _public_key(
    private: dict[Attribute, Any], public: dict[Attribute, Any] | None
) -> PublicKey | None:
    """The public half, from the private object (RSA) or the matching public object (EC)."""
    key_type = private.get(Attribute.KEY_TYPE)
    try:
        if key_type == KeyType.RSA:
            modulus, exponent = (
                private.get(Attribute.MODULUS),
                private.get(Attribute.PUBLIC_EXPONENT),
            )
            if not modulus or not exponent:
                return None
            return rsa.RSAPublicNumbers(
                int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")
            ).public_key()
        if public is None or public.get(Attribute.KEY_TYPE) != key_type:
            return None
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
