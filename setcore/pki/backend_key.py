"""``cryptography`` private-key objects whose ``sign`` goes to a key backend.

``CertificateBuilder.sign`` and ``CertificateRevocationListBuilder.sign`` accept any
object that is an ``EllipticCurvePrivateKey`` or ``RSAPrivateKey`` and call its Python
``sign`` with the whole to-be-signed bytes; these classes forward that call to
``KeyBackend.sign``, which hashes inside. The private key never leaves the backend, so
every method that would expose it (numbers, serialization, key agreement, decryption)
refuses.

RSA certificates and CRLs are signed RSA-PSS (SHA-256, MGF1-SHA-256, salt 32), the only
RSA scheme the backends offer; pass ``CERTIFICATE_PSS`` as ``rsa_padding``. ``sign``
accepts only that very object, so the AlgorithmIdentifier ``cryptography`` writes into
the certificate always names what the backend actually computed.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.utils import Buffer

from hsm.base import KeyBackend, KeyHandle
from setcore.errors import ConfigurationError
from setcore.signed import PSS_SALT_BYTES, low_s

#: The RSA-PSS parameters of every setpay certificate and CRL signature.
CERTIFICATE_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_BYTES)


def _no_private_material() -> NoReturn:
    raise ConfigurationError("a backend key signs only; its private half never leaves the backend")


class BackendECKey(ec.EllipticCurvePrivateKey):
    """An ECDSA P-256 key held by a ``KeyBackend``, usable by the X.509 builders."""

    def __init__(self, backend: KeyBackend, handle: KeyHandle) -> None:
        public = handle.public_key
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise ConfigurationError(f"{handle!r} is not an EC key")
        self._backend = backend
        self._handle = handle
        self._public = public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """ECDSA-SHA-256 over ``data`` in the backend (DER signature)."""
        if not isinstance(signature_algorithm, ec.ECDSA) or not isinstance(
            signature_algorithm.algorithm, hashes.SHA256
        ):
            raise ConfigurationError("backend EC keys sign ECDSA with SHA-256 only")
        # Low-S, as every ECDSA signature setpay makes, so that of a certificate's two
        # encodings the one the CA issued is the low-S one. It does not stop anyone making
        # the high-S twin (another thumbprint), which verifiers accept: ``setcore.pki.chain``
        # says why, and why a twin is harmless.
        return low_s(self._backend.sign(self._handle, bytes(data)))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half."""
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        """The key's curve."""
        return self._public.curve

    @property
    def key_size(self) -> int:
        """Bit length of the curve order."""
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> NoReturn:
        """Refused: certificate signing keys do not agree keys."""
        _no_private_material()

    def private_numbers(self) -> NoReturn:
        """Refused: the private key stays in the backend."""
        _no_private_material()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> NoReturn:
        """Refused: the private key stays in the backend."""
        _no_private_material()

    def __copy__(self) -> BackendECKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> BackendECKey:
        return self

    def __repr__(self) -> str:
        return f"BackendECKey({self._handle!r})"


class BackendRSAKey(rsa.RSAPrivateKey):
    """An RSA key held by a ``KeyBackend`` that signs RSA-PSS, usable by the X.509 builders."""

    def __init__(self, backend: KeyBackend, handle: KeyHandle) -> None:
        public = handle.public_key
        if not isinstance(public, rsa.RSAPublicKey):
            raise ConfigurationError(f"{handle!r} is not an RSA key")
        self._backend = backend
        self._handle = handle
        self._public = public

    def sign(
        self,
        data: bytes,
        padding: padding.AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | utils.Prehashed | utils.NoDigestInfo,
    ) -> bytes:
        """RSA-PSS-SHA-256 (salt 32) over ``data`` in the backend."""
        if padding is not CERTIFICATE_PSS or not isinstance(algorithm, hashes.SHA256):
            raise ConfigurationError(
                "backend RSA keys sign with CERTIFICATE_PSS (RSA-PSS SHA-256, salt 32) only"
            )
        return self._backend.sign(self._handle, bytes(data))

    def public_key(self) -> rsa.RSAPublicKey:
        """The public half."""
        return self._public

    @property
    def key_size(self) -> int:
        """Modulus size in bits."""
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> NoReturn:
        """Refused: certificate signing keys do not decrypt."""
        _no_private_material()

    def private_numbers(self) -> NoReturn:
        """Refused: the private key stays in the backend."""
        _no_private_material()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> NoReturn:
        """Refused: the private key stays in the backend."""
        _no_private_material()

    def __copy__(self) -> BackendRSAKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> BackendRSAKey:
        return self

    def __repr__(self) -> str:
        return f"BackendRSAKey({self._handle!r})"


def backend_private_key(backend: KeyBackend, handle: KeyHandle) -> BackendECKey | BackendRSAKey:
    """The X.509-builder key object for a backend signing key (EC P-256 or RSA)."""
    if not handle.usage.can_sign:
        raise ConfigurationError(f"{handle!r} cannot sign")
    if isinstance(handle.public_key, ec.EllipticCurvePublicKey):
        return BackendECKey(backend, handle)
    if isinstance(handle.public_key, rsa.RSAPublicKey):
        return BackendRSAKey(backend, handle)
    raise ConfigurationError(f"{handle!r}: certificates are signed with EC P-256 or RSA keys")
