"""SET's digital envelopes: E / EX / Enc / EncX as a KEM plus AES-256-GCM (``Sealed``).

Sealing to a key-exchange certificate:

    ikm   = ECDH(ephemeral, recipient)         kem_ciphertext = ephemeral public point
          | seed (32 random bytes)             kem_ciphertext = RSA-OAEP(recipient, seed)
    keys  = HKDF-SHA-256(ikm, info = KDF label, kem, content type, kem_ciphertext,
                          recipient thumbprint) -> body key (32) || extra key (32)
    body  = AES-256-GCM(body key, plaintext, AD(content type, "body", recipient, XID, RRPID))
    extra = AES-256-GCM(extra key, extra, AD(content type, "extra:" extra type, ...))

The extra part (PANData, PANOnly, PANData0, AcctData) is what SET put inside the RSA
block: only the recipient opens it, and the body links it by digest so the sender's
signature covers it. A sealed envelope's keys are fresh per envelope, so each encrypts one
message. The back-key envelope (EncK, ``seal_with_key``) is the exception: the wallet's
back key encrypts the CA's CertRes and then each CertInqRes about the same request.

Opening checks, in order: the envelope is addressed to this certificate
(WRONG_RECIPIENT), the XID and RRPID it is bound to are absent or identifiers
(DECODING_FAILURE), the KEM is the one this key accepts and the AEAD is AES-256-GCM
(ALGORITHM_NOT_ALLOWED: no downgrade by a peer), the content types and the extra part are
the expected ones (DECODING_FAILURE), the nonce and KEM lengths (DECRYPTION_FAILURE), the
bound ids are the ones the caller expects, if it names them (WRAPPER_MSG_MISMATCH), then
decapsulation and both AEAD tags (DECRYPTION_FAILURE, with no detail of which step failed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hsm.base import KemAlgorithm, KeyBackend, KeyHandle, PublicKey
from hsm.errors import DecapsulationError, KeyUsageError
from hsm.policy import P256_POINT_LENGTH
from setcore.encoding import KDF_LABEL, aead_associated_data, check_bound_ids
from setcore.errors import ErrorCode, fail, quoted
from setpay.v1 import crypto_pb2

AEAD_ALG = "aes-256-gcm"
# GCM's standard 96-bit nonce, random. A sealed envelope's keys encrypt one message each.
# A back key encrypts a CertRes and one CertInqRes per inquiry (a resent inquiry gets the
# stored answer, not a new one), and only the holder of the requested key can inquire (the
# CA verifies the inquiry with it): a handful of messages, where SP 800-38D (8.3) allows
# random nonces 2^32 under one key, the point at which a repeat has odds of 2^-32.
NONCE_BYTES = 12
# Length of the RSA KEM seed and of each derived AES-256 key.
SEED_BYTES = 32
KEY_BYTES = 32
BODY_PART = "body"


@dataclass(frozen=True)
class Recipient:
    """Whom an envelope is sealed to: a key-exchange public key, its certificate, its KEM."""

    public_key: PublicKey
    cert_thumb: bytes
    kem: KemAlgorithm

    def __repr__(self) -> str:
        return f"Recipient({self.cert_thumb.hex()[:16]}..., {self.kem.value})"


@dataclass(frozen=True, repr=False)
class Opened:
    """The plaintexts of an opened envelope."""

    plaintext: bytes
    extra: bytes | None

    def __repr__(self) -> str:
        # The extra part is PANData or AcctData: a repr (a log line, a traceback's
        # locals, a failed assertion) shows sizes, never the bytes.
        extra = "none" if self.extra is None else f"{len(self.extra)} bytes"
        return f"Opened(plaintext={len(self.plaintext)} bytes, extra={extra})"


def _oaep(kem: KemAlgorithm) -> padding.OAEP:
    algorithm: hashes.HashAlgorithm = (
        hashes.SHA1() if kem is KemAlgorithm.RSA_OAEP_SHA1 else hashes.SHA256()  # noqa: S303
    )
    return padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)


def _derive(kem: KemAlgorithm, ikm: bytes, content_type: str, kem_ct: bytes, thumb: bytes) -> bytes:
    # No length prefixes, yet one way only to split the info: the KEM name and content
    # type (setpay's own constants, never a peer's text) hold no NUL and each ends with
    # one, and the thumbprint, last, is always SHA-256's 32 bytes, so kem_ct is what lies
    # between. Any new part must keep that (a fixed length, or a terminator it cannot
    # hold); the layout is pinned by the envelope vectors and cannot change in place.
    info = b"".join(
        (KDF_LABEL, kem.value.encode(), b"\x00", content_type.encode(), b"\x00", kem_ct, thumb)
    )
    return HKDF(algorithm=hashes.SHA256(), length=2 * KEY_BYTES, salt=None, info=info).derive(ikm)


def encapsulate(recipient: Recipient) -> tuple[bytes, bytes]:
    """(ikm, kem_ciphertext): a fresh secret for ``recipient`` and its key transport."""
    key = recipient.public_key
    if recipient.kem is KemAlgorithm.P256_HKDF_SHA256:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "ECDH KEM needs an EC key")
        ephemeral = ec.generate_private_key(ec.SECP256R1())
        shared = ephemeral.exchange(ec.ECDH(), key)
        point = ephemeral.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return shared, point
    if not isinstance(key, rsa.RSAPublicKey):
        raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "RSA KEM needs an RSA key")
    seed = os.urandom(SEED_BYTES)
    return seed, key.encrypt(seed, _oaep(recipient.kem))


def seal(
    content_type: str,
    plaintext: bytes,
    recipient: Recipient,
    *,
    xid: bytes = b"",
    rrpid: bytes = b"",
    extra: tuple[str, bytes] | None = None,
) -> crypto_pb2.Sealed:
    """Seal ``plaintext`` (and an optional extra part) to ``recipient``."""
    ikm, kem_ct = encapsulate(recipient)
    keys = _derive(recipient.kem, ikm, content_type, kem_ct, recipient.cert_thumb)
    nonce = os.urandom(NONCE_BYTES)
    ad = aead_associated_data(content_type, BODY_PART, recipient.cert_thumb, xid, rrpid)
    sealed = crypto_pb2.Sealed(
        content_type=content_type,
        recipient_cert_thumb=recipient.cert_thumb,
        kem_alg=recipient.kem.value,
        kem_ciphertext=kem_ct,
        aead_alg=AEAD_ALG,
        nonce=nonce,
        ciphertext=AESGCM(keys[:KEY_BYTES]).encrypt(nonce, plaintext, ad),
        xid=xid,
        rrpid=rrpid,
    )
    if extra is not None:
        extra_type, extra_bytes = extra
        extra_nonce = os.urandom(NONCE_BYTES)
        extra_ad = aead_associated_data(
            content_type, "extra:" + extra_type, recipient.cert_thumb, xid, rrpid
        )
        sealed.extra_content_type = extra_type
        sealed.extra_nonce = extra_nonce
        sealed.extra_ciphertext = AESGCM(keys[KEY_BYTES:]).encrypt(
            extra_nonce, extra_bytes, extra_ad
        )
    return sealed


def _check_header(
    sealed: crypto_pb2.Sealed,
    key: KeyHandle,
    my_cert_thumb: bytes,
    content_type: str,
    extra_type: str | None,
) -> KemAlgorithm:
    if sealed.recipient_cert_thumb != my_cert_thumb:
        raise fail(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, "sealed to another certificate")
    check_bound_ids(sealed.xid, sealed.rrpid)
    if key.kem is None or sealed.kem_alg != key.kem.value:
        raise fail(
            ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, f"KEM {quoted(sealed.kem_alg)} refused"
        )
    if sealed.aead_alg != AEAD_ALG:
        raise fail(
            ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, f"AEAD {quoted(sealed.aead_alg)} refused"
        )
    if sealed.content_type != content_type:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"sealed {quoted(sealed.content_type)} where {content_type!r} was expected",
        )
    has_extra = bool(sealed.extra_ciphertext or sealed.extra_nonce or sealed.extra_content_type)
    if extra_type is None and has_extra:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "unexpected extra part")
    if extra_type is not None and sealed.extra_content_type != extra_type:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "missing or mistyped extra part")
    if len(sealed.nonce) != NONCE_BYTES or (
        extra_type is not None and len(sealed.extra_nonce) != NONCE_BYTES
    ):
        raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "bad nonce length")
    # SEC1's uncompressed point: ``hsm.policy``'s length, the one every backend decapsulates.
    if key.kem is KemAlgorithm.P256_HKDF_SHA256 and len(sealed.kem_ciphertext) != P256_POINT_LENGTH:
        raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "bad KEM ciphertext length")
    return key.kem


def open_sealed(
    sealed: crypto_pb2.Sealed,
    backend: KeyBackend,
    key: KeyHandle,
    my_cert_thumb: bytes,
    content_type: str,
    *,
    extra_type: str | None = None,
    xid: bytes | None = None,
    rrpid: bytes | None = None,
) -> Opened:
    """Open an envelope addressed to ``my_cert_thumb``; raises ProtocolError.

    ``xid``/``rrpid``, when given, must equal the ids the envelope is bound to.
    """
    kem = _check_header(sealed, key, my_cert_thumb, content_type, extra_type)
    if (xid is not None and sealed.xid != xid) or (rrpid is not None and sealed.rrpid != rrpid):
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "envelope ids differ")
    try:
        ikm = backend.decapsulate(key, kem, sealed.kem_ciphertext)
    except (DecapsulationError, KeyUsageError) as exc:
        raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "cannot open envelope") from exc
    if kem is not KemAlgorithm.P256_HKDF_SHA256 and len(ikm) != SEED_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "key transport seed is not 32 bytes")
    keys = _derive(kem, ikm, content_type, sealed.kem_ciphertext, my_cert_thumb)
    ad = aead_associated_data(content_type, BODY_PART, my_cert_thumb, sealed.xid, sealed.rrpid)
    try:
        plaintext = AESGCM(keys[:KEY_BYTES]).decrypt(sealed.nonce, sealed.ciphertext, ad)
        extra = None
        if extra_type is not None:
            extra_ad = aead_associated_data(
                content_type, "extra:" + extra_type, my_cert_thumb, sealed.xid, sealed.rrpid
            )
            extra = AESGCM(keys[KEY_BYTES:]).decrypt(
                sealed.extra_nonce, sealed.extra_ciphertext, extra_ad
            )
    except InvalidTag as exc:
        raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "cannot open envelope") from exc
    return Opened(plaintext=plaintext, extra=extra)


def seal_with_key(
    content_type: str, plaintext: bytes, key: bytes, *, rrpid: bytes = b""
) -> crypto_pb2.KeySealed:
    """EncK: AES-256-GCM under a key the requester supplied (the cardholder's back key)."""
    if len(key) != KEY_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "back key must be 32 bytes")
    nonce = os.urandom(NONCE_BYTES)
    ad = aead_associated_data(content_type, "back-key", b"", b"", rrpid)
    return crypto_pb2.KeySealed(
        content_type=content_type,
        aead_alg=AEAD_ALG,
        nonce=nonce,
        ciphertext=AESGCM(key).encrypt(nonce, plaintext, ad),
        rrpid=rrpid,
    )


def open_with_key(
    sealed: crypto_pb2.KeySealed, key: bytes, content_type: str, *, rrpid: bytes
) -> bytes:
    """Open an EncK envelope with the key this party supplied; raises ProtocolError."""
    if sealed.content_type != content_type or sealed.aead_alg != AEAD_ALG:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "unexpected back-key envelope")
    if sealed.rrpid != rrpid:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, "back-key envelope for another request")
    if len(sealed.nonce) != NONCE_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "bad nonce length")
    ad = aead_associated_data(content_type, "back-key", b"", b"", rrpid)
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, ad)
    except InvalidTag as exc:
        raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "cannot open envelope") from exc
