"""SET's S and SO operators: signatures over exact bytes, with the algorithm on an allow-list.

The author serializes a TBS message once and signs ``signature_input(ct, alg, tbs)``; the
bytes travel beside the signature and receivers verify before they parse. The algorithm
follows the key: a signature whose ``alg`` is not the one the signer's key type signs
with is refused, so a peer cannot choose a weaker algorithm for us; and the algorithm's
identifier is inside the signed bytes, so a signature made for one algorithm is never
valid input to another.

ECDSA signatures are low-S only: for every valid (r, s), (r, n - s) verifies too, so
anyone holding a signed message could make a second encoding of it (other bytes, same
content) without the key. Every signature made here has s <= n/2 (``low_s``), and
``verify_signature`` refuses the other half as a bad signature. Ed25519 (S < L) and
RSA-PSS have no such twin that a third party can make.

Every ECDSA signature setpay makes is low-S: SET messages here, certificates and CRLs in
``setcore.pki.backend_key``. Refusing the high half is for SET messages only: a
BrandCRLIdentifier is accepted either way (``setcore.pki.bci`` says why), and
certificates and CRLs are verified by ``cryptography``, which accepts either s
(``setcore.pki.chain`` says why that stays so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hsm.base import KeyAlgorithm, KeyBackend, KeyHandle, PublicKey, SignatureAlgorithm
from hsm.policy import P256_ORDER, PSS_SALT_LENGTH, RSA_PUBLIC_EXPONENT, low_s_signature
from setcore.encoding import parse_strict, signature_input
from setcore.errors import ErrorCode, fail, quoted
from setpay.v1 import crypto_pb2

# The RSA moduli setpay accepts: exactly the sizes a backend holds (``hsm.base``'s key
# types, 2048 and 3072), not merely "2048 or more": a verification's cost grows with the
# square of the modulus, and a peer's certificate may carry up to RSA-16384 (the largest
# OpenSSL verifies), ~20 times an RSA-3072 check, for a key no setpay party ever holds.
RSA_KEY_BITS = frozenset(algorithm.rsa_bits for algorithm in KeyAlgorithm if algorithm.is_rsa)
_RSA_SIZES = " and ".join(f"RSA-{bits}" for bits in sorted(RSA_KEY_BITS))
# RSA-PSS salt length: ``hsm.policy``'s, the one every backend signs with, so that what
# setpay verifies cannot drift from what a backend makes.
PSS_SALT_BYTES = PSS_SALT_LENGTH
# An ECDSA s above n // 2 (n the order of P-256's base point, ``hsm.policy``'s, which
# every backend normalizes with) is the high half, which setpay never makes and refuses
# on a SET message (see the module docstring).
_P256_HALF_ORDER = P256_ORDER // 2
# ECDSA with SHA-256, the one EC signature algorithm verified: an immutable description,
# made once (making one imports inside ``cryptography``, about 1 us, twice per AuthReq).
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def low_s(der: bytes) -> bytes:
    """The low-S form of a DER ECDSA P-256 signature: itself if s <= n/2, else (r, n - s)
    (``hsm.policy.low_s_signature``, the backends' rule)."""
    r, s = decode_dss_signature(der)
    if s <= _P256_HALF_ORDER:
        return der
    return low_s_signature(r, s)


def is_high_s(der: bytes) -> bool:
    """Whether a DER ECDSA P-256 signature has s > n/2; ValueError if it is not DER."""
    return decode_dss_signature(der)[1] > _P256_HALF_ORDER


def algorithm_for_public_key(public_key: PublicKey) -> SignatureAlgorithm:
    """The only signature algorithm a public key is accepted with."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "EC curve is not P-256")
        return SignatureAlgorithm.ECDSA_P256_SHA256
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return SignatureAlgorithm.ED25519
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size not in RSA_KEY_BITS:
            raise fail(
                ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
                f"RSA-{public_key.key_size} key: only {_RSA_SIZES} are allowed",
            )
        # The only public exponent accepted is the one every backend generates
        # (``hsm.policy``'s). A verification costs a modular multiplication per bit of e,
        # and OpenSSL bounds e only above RSA-3072: an RSA-3072 key with an e of ~3070
        # bits costs ~80 times an e = 65537 one for every signature checked with it.
        if public_key.public_numbers().e != RSA_PUBLIC_EXPONENT:
            raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "RSA public exponent not 65537")
        return SignatureAlgorithm.RSA_PSS_SHA256
    raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "unsupported public key type")


def _signature(
    backend: KeyBackend, key: KeyHandle, signer_cert_thumb: bytes, content_type: str, tbs: bytes
) -> crypto_pb2.Signature:
    algorithm = key.signature_algorithm.value
    value = backend.sign(key, signature_input(content_type, algorithm, tbs))
    if key.signature_algorithm is SignatureAlgorithm.ECDSA_P256_SHA256:
        # ``KeyBackend.sign`` promises low-S; made here again all the same, because a
        # backend that broke the promise (a new one, a token whose answer changed) would
        # otherwise have every peer refuse about half of what we sign.
        value = low_s(value)
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
    public_key: PublicKey,
    signature: crypto_pb2.Signature,
    content_type: str,
    tbs: bytes,
    *,
    accept_high_s: bool = False,
) -> None:
    """Verify one signature over ``tbs``; raises ProtocolError, returns nothing.

    A high-S ECDSA signature is SIGNATURE_FAILURE like any bad one, unless
    ``accept_high_s`` (only for objects signed before setpay signed low-S and still
    current: see ``setcore.pki.bci``).
    """
    expected = algorithm_for_public_key(public_key)
    if signature.alg != expected.value:
        raise fail(
            ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
            f"signature algorithm {quoted(signature.alg)} does not match the key"
            f" ({expected.value})",
        )
    data = signature_input(content_type, expected.value, tbs)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if is_high_s(signature.value) and not accept_high_s:
                raise fail(
                    ErrorCode.ERROR_CODE_SIGNATURE_FAILURE,
                    f"bad {content_type} signature: ECDSA s above n/2 (the malleable twin "
                    "of a signature; setpay accepts low-S signatures only)",
                )
            public_key.verify(signature.value, data, _ECDSA_SHA256)
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
            f"detached signature for {quoted(detached.content_type)}, expected {content_type!r}",
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
    signed: crypto_pb2.Signed,
    content_type: str,
    resolve: SignerResolver[V],
    *,
    accept_high_s: bool = False,
) -> VerifiedSigned[V]:
    """Check the content type, resolve the signer, verify, and hand back the exact bytes.

    Exactly one signature is expected; a renewal CertReq (two signatures, old key and
    new) is opened by ``setcore.registration_certreq``, which verifies each.
    ``accept_high_s`` is ``verify_signature``'s.
    """
    if signed.content_type != content_type:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"signed {quoted(signed.content_type)} where {content_type!r} was expected",
        )
    if len(signed.signatures) != 1:
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "exactly one signature expected")
    public_key, signer = resolve(signed.signatures[0], signed.bundle)
    verify_signature(
        public_key, signed.signatures[0], content_type, signed.tbs, accept_high_s=accept_high_s
    )
    return VerifiedSigned(tbs=signed.tbs, signer=signer, signed=signed)
