"""Tokens the gateway seals to itself: AES-256-GCM under a key derived once per process.

SET-PROTOCOL.md 9.3.12 lets capture and authorization tokens be "AEAD-sealed by the
gateway to itself with a gateway-held key". Sealing each token to the token-sealing key
with a fresh ECDH (or RSA-OAEP) costs a key generation and a key agreement per token and
a decapsulation per opening; none of that is needed when sealer and opener are the same
party. Instead:

    token seed  = a KEM ciphertext to the token-sealing key, made once (``setpay init``)
                  and stored beside the bank's certificates (it is useless without the key)
    master key  = HKDF-SHA-256(decapsulate(token key, token seed), info = KDF label ||
                  TOKEN_KEM || 0x00 "master" 0x00 || key id)
                                                -- once per process, through the key backend
    key id      = DD(token key SPKI || token seed): names the master key in each token
    per token   = salt (32 random bytes), nonce (12 random bytes),
                  token key = HKDF-SHA-256(master, salt, info = KDF label || TOKEN_KEM ||
                  0x00 || content type || 0x00 || key id)
                  AES-256-GCM(token key, plaintext, AD(content type, "body", key id, XID, RRPID))

A fresh key per token keeps GCM far from its random-nonce limit (2^32 messages per key)
however long the master key lives. The token travels as a ``Sealed`` message:
``recipient_cert_thumb`` is the key id, ``kem_alg`` is ``TOKEN_KEM``, ``kem_ciphertext`` is
the salt. Opening checks, in order: the key id (WRONG_RECIPIENT), the bound XID and RRPID
absent or identifiers (DECODING_FAILURE), the KEM and AEAD (ALGORITHM_NOT_ALLOWED), the
content type and the absence of an extra part (DECODING_FAILURE), the salt and nonce
lengths and the AEAD tag (DECRYPTION_FAILURE).

Errors (``setcore.errors``): ``ProtocolError`` when a token does not open;
``ConfigurationError`` when the key cannot decapsulate or the backend cannot open the seed
(a bank misconfiguration, found at start, never on a payment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hsm.base import KeyBackend, KeyHandle
from hsm.errors import DecapsulationError, KeyUsageError
from setcore.encoding import KDF_LABEL, aead_associated_data, check_bound_ids, digest
from setcore.envelope import AEAD_ALG, BODY_PART, KEY_BYTES, NONCE_BYTES, Recipient, encapsulate
from setcore.errors import ConfigurationError, ErrorCode, fail, quoted
from setpay.v1 import crypto_pb2

# The KEM name a self-sealed token carries: no key transport, a salt under the master key.
TOKEN_KEM = "gateway-token-hkdf-sha256"  # noqa: S105 - an algorithm name, not a secret
# Random salt per token (the HKDF salt of its key): 256 bits, so two tokens never share a key.
SALT_BYTES = 32
# Domain of the key id digest (a content type in the sense of ``setcore.encoding``).
KEY_ID_CT = "setpay.v1.TokenKeyId"
_MASTER_INFO = KDF_LABEL + TOKEN_KEM.encode() + b"\x00master\x00"


def _spki(key: KeyHandle) -> bytes:
    return key.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class TokenKey:
    """The gateway's token-sealing key, opened once: seals and opens tokens without a KEM."""

    key: KeyHandle
    seed: bytes
    key_id: bytes
    master: bytes = field(repr=False)

    @classmethod
    def create(cls, backend: KeyBackend, key: KeyHandle) -> TokenKey:
        """A new token seed for ``key`` (``setpay init``); store ``seed`` beside the bank."""
        if key.kem is None:
            raise ConfigurationError("a token-sealing key must be a decapsulation key")
        _, seed = encapsulate(Recipient(key.public_key, b"", key.kem))
        return cls.from_handle(backend, key, seed)

    @classmethod
    def from_handle(cls, backend: KeyBackend, key: KeyHandle, seed: bytes) -> TokenKey:
        """Derive the master key from the stored ``seed``, through the key backend."""
        if key.kem is None:
            raise ConfigurationError("a token-sealing key must be a decapsulation key")
        try:
            ikm = backend.decapsulate(key, key.kem, seed)
        except (DecapsulationError, KeyUsageError) as exc:
            raise ConfigurationError("the token seed does not open with the token key") from exc
        key_id = digest(KEY_ID_CT, _spki(key) + seed)
        master = HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_MASTER_INFO + key_id
        ).derive(ikm)
        return cls(key, seed, key_id, master)

    def _token_aead(self, content_type: str, salt: bytes) -> AESGCM:
        info = b"".join((KDF_LABEL, TOKEN_KEM.encode(), b"\x00", content_type.encode(), b"\x00"))
        derived = HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info + self.key_id
        ).derive(self.master)
        return AESGCM(derived)

    def seal(
        self, content_type: str, plaintext: bytes, *, xid: bytes, rrpid: bytes
    ) -> crypto_pb2.Sealed:
        """Seal ``plaintext`` to this gateway, bound to ``xid`` and ``rrpid``."""
        salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
        ad = aead_associated_data(content_type, BODY_PART, self.key_id, xid, rrpid)
        return crypto_pb2.Sealed(
            content_type=content_type,
            recipient_cert_thumb=self.key_id,
            kem_alg=TOKEN_KEM,
            kem_ciphertext=salt,
            aead_alg=AEAD_ALG,
            nonce=nonce,
            ciphertext=self._token_aead(content_type, salt).encrypt(nonce, plaintext, ad),
            xid=xid,
            rrpid=rrpid,
        )

    def open(self, sealed: crypto_pb2.Sealed, content_type: str) -> bytes:
        """The plaintext of a token this key sealed; raises ProtocolError."""
        if sealed.recipient_cert_thumb != self.key_id:
            raise fail(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, "sealed under another token key")
        check_bound_ids(sealed.xid, sealed.rrpid)
        if sealed.kem_alg != TOKEN_KEM:
            raise fail(
                ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, f"KEM {quoted(sealed.kem_alg)} refused"
            )
        if sealed.aead_alg != AEAD_ALG:
            raise fail(
                ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
                f"AEAD {quoted(sealed.aead_alg)} refused",
            )
        if sealed.content_type != content_type:
            raise fail(
                ErrorCode.ERROR_CODE_DECODING_FAILURE,
                f"sealed {quoted(sealed.content_type)} where {content_type!r} was expected",
            )
        if sealed.extra_ciphertext or sealed.extra_nonce or sealed.extra_content_type:
            raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "unexpected extra part")
        if len(sealed.kem_ciphertext) != SALT_BYTES:
            raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "bad salt length")
        # Here, not left to AES-GCM: it takes 8 to 128 bytes, raising ValueError on others.
        if len(sealed.nonce) != NONCE_BYTES:
            raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "bad nonce length")
        ad = aead_associated_data(content_type, BODY_PART, self.key_id, sealed.xid, sealed.rrpid)
        aead = self._token_aead(content_type, sealed.kem_ciphertext)
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, ad)
        except InvalidTag as exc:
            raise fail(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, "cannot open token") from exc
