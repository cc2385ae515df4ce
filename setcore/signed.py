"""SET's S and SO operators: signatures over exact bytes, with the algorithm on an allow-list.

The author serializes a TBS message once and signs ``signature_input(ct, alg, tbs)``; the
bytes travel beside the signature and receivers verify before they parse. The algorithm
follows the key: a signature whose ``alg`` is not the one the signer's key type signs
with is refused, so a peer cannot choose a weaker algorithm for us; and the algorithm's
identifier is inside the signed bytes, so a signature made for one algorithm is never
valid input to another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from hsm.base import KeyBackend, KeyHandle, PublicKey, SignatureAlgorithm
from setcore.encoding import parse_strict, signature_input
from setcore.errors import ErrorCode, fail
from setpay.v1 import crypto_pb2

# RSA below this is refused outright (DESIGN.md section 3).
MIN_RSA_BITS = 2048
# RSA-PSS salt length: the digest length, fixed so that every backend agrees.
PSS_SALT_BYTES = 32


def algorithm_for_public_key(public_key: PublicKey) -> SignatureAlgorithm:
    """The only signature algorithm a public key is accepted with."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "EC curve is not P-256")
        return SignatureAlgorithm.ECDSA_P256_SHA256
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return SignatureAlgorithm.ED25519
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "RSA key below 2048 bits")
        return SignatureAlgorithm.RSA_PSS_SHA256
    raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "unsupported public key type")


def _signature(
    backend: KeyBackend, key: KeyHandle, signer_cert_thumb: bytes, content_type: str, tbs: bytes
) -> crypto_pb2.Signature:
    algorithm = key.signature_algorithm.value
    value = backend.sign(key, signature_input(content_type, algorithm, tbs))
    return crypto_pb2.Signature(signer_cert_thumb=signer_cert_thumb, alg=algorithm, value=value)


def sign(
    backend: KeyBackend,
    key: KeyHandle,
    signer_cert_thumb: bytes,
    content_type: str,
    tbs: bytes,
    bundle: crypto_pb2.CertBundle | None = None,
) -> crypto_pb2.Signed:
    """S(s, t): sign the exact ``tbs`` bytes under ``content_type``."""
    signed = crypto_pb2.Signed(content_type=content_type, tbs=tbs)
    signed.signatures.append(_signature(backend, key, signer_cert_thumb, content_type, tbs))
    if bundle is not None:
        signed.bundle.CopyFrom(bundle)
    return signed


def countersign(
    backend: KeyBackend, key: KeyHandle, signer_cert_thumb: bytes, signed: crypto_pb2.Signed
) -> None:
    """Add a second signature over the same bytes (renewal: old key and new key)."""
    signed.signatures.append(
        _signature(backend, key, signer_cert_thumb, signed.content_type, signed.tbs)
    )


def sign_detached(
    backend: KeyBackend, key: KeyHandle, signer_cert_thumb: bytes, content_type: str, tbs: bytes
) -> crypto_pb2.DetachedSignature:
    """SO(s, t): a signature whose signed bytes travel elsewhere."""
    return crypto_pb2.DetachedSignature(
        content_type=content_type,
        signature=_signature(backend, key, signer_cert_thumb, content_type, tbs),
    )


def verify_signature(
    public_key: PublicKey, signature: crypto_pb2.Signature, content_type: str, tbs: bytes
) -> None:
    """Verify one signature over ``tbs``; raises ProtocolError, returns nothing."""
    expected = algorithm_for_public_key(public_key)
    if signature.alg != expected.value:
        raise fail(
            ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
            f"signature algorithm {signature.alg!r} does not match the key ({expected.value})",
        )
    data = signature_input(content_type, expected.value, tbs)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature.value, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature.value, data)
        else:
            public_key.verify(
                signature.value,
                data,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_BYTES),
                hashes.SHA256(),
            )
    except (InvalidSignature, ValueError) as exc:
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, f"bad {content_type} signature") from exc


def verify_detached(
    public_key: PublicKey, detached: crypto_pb2.DetachedSignature, content_type: str, tbs: bytes
) -> None:
    """Verify SO(s, t) over bytes the verifier holds; the content type must match too."""
    if detached.content_type != content_type:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"detached signature for {detached.content_type!r}, expected {content_type!r}",
        )
    verify_signature(public_key, detached.signature, content_type, tbs)


V = TypeVar("V")

#: Finds and verifies the signer's certificate for a signature (chain, role, revocation)
#: and returns its public key with whatever the caller wants to know about the signer.
SignerResolver = Callable[[crypto_pb2.Signature, crypto_pb2.CertBundle], tuple[PublicKey, V]]


@dataclass(frozen=True)
class VerifiedSigned(Generic[V]):
    """The bytes of a verified Signed and who signed them."""

    tbs: bytes
    signer: V
    signed: crypto_pb2.Signed


def parse_signed(data: bytes) -> crypto_pb2.Signed:
    """Parse a serialized Signed container strictly."""
    return parse_strict(crypto_pb2.Signed, data, own_content_type=False)


def open_signed(
    signed: crypto_pb2.Signed, content_type: str, resolve: SignerResolver[V]
) -> VerifiedSigned[V]:
    """Check the content type, resolve the signer, verify, and hand back the exact bytes.

    Exactly one signature is expected; a renewal CertReq (two signatures, old key and
    new) is opened by ``setcore.registration_certreq``, which verifies each.
    """
    if signed.content_type != content_type:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"signed {signed.content_type!r} where {content_type!r} was expected",
        )
    if len(signed.signatures) != 1:
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "exactly one signature expected")
    public_key, signer = resolve(signed.signatures[0], signed.bundle)
    verify_signature(public_key, signed.signatures[0], content_type, signed.tbs)
    return VerifiedSigned(tbs=signed.tbs, signer=signer, signed=signed)
