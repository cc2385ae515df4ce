"""The one seam over key custody: ``KeyBackend`` hands out key handles, never key bytes.

A backend generates, imports, finds and deletes keys; it signs and decapsulates with
them; it can hold a certificate beside a key. Everything that needs no private key
(hashing, HKDF, AEAD, verification) is the caller's business and runs in software.

Each key has a label, a version (rotation creates version n+1 under the same label), an
algorithm and a usage. The usage is enforced by the backend:

    usage          may sign   may decapsulate
    signature      yes        no
    ca-signing     yes        no
    key-exchange   no         yes
    token-sealing  no         yes

A handle names one key: its label, its version and its public key. Delete every
version of a label and generate it again, and version 1 is another key; a handle taken
before gets ``KeyNotFound``, never the new key's signatures.

Signatures are returned in the encoding X.509 uses: DER ``ECDSA-Sig-Value`` for ECDSA,
the raw 64 bytes for Ed25519, the raw modulus-sized block for RSA-PSS.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class KeyUsage(str, enum.Enum):  # noqa: UP042 - str() of members stays as it is
    """What a key may be used for; the backend refuses anything else."""

    SIGNATURE = "signature"
    CA_SIGNING = "ca-signing"
    KEY_EXCHANGE = "key-exchange"
    TOKEN_SEALING = "token-sealing"  # noqa: S105 - a usage name, not a password

    @property
    def can_sign(self) -> bool:
        """True for usages that permit ``sign``."""
        return self in (KeyUsage.SIGNATURE, KeyUsage.CA_SIGNING)

    @property
    def can_decapsulate(self) -> bool:
        """True for usages that permit ``decapsulate``."""
        return self in (KeyUsage.KEY_EXCHANGE, KeyUsage.TOKEN_SEALING)


class KeyAlgorithm(str, enum.Enum):  # noqa: UP042 - str() of members stays as it is
    """Key types a backend can generate."""

    EC_P256 = "ec-p256"
    ED25519 = "ed25519"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"

    @property
    def is_rsa(self) -> bool:
        """True for the RSA key types."""
        return self in (KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_3072)

    @property
    def rsa_bits(self) -> int:
        """Modulus size of an RSA key type."""
        return {KeyAlgorithm.RSA_2048: 2048, KeyAlgorithm.RSA_3072: 3072}[self]


class SignatureAlgorithm(str, enum.Enum):  # noqa: UP042 - str() of members stays as it is
    """Signature algorithms on the allow-list (SET-PROTOCOL.md 8.3)."""

    ECDSA_P256_SHA256 = "ecdsa-p256-sha256"
    ED25519 = "ed25519"
    RSA_PSS_SHA256 = "rsa-pss-sha256"


class KemAlgorithm(str, enum.Enum):  # noqa: UP042 - str() of members stays as it is
    """Key-transport algorithms on the allow-list (SET-PROTOCOL.md 8.3).

    ``rsa-oaep-sha1`` exists only for tokens whose OAEP stops at SHA-1 (SoftHSM 2.6).
    """

    P256_HKDF_SHA256 = "p256-hkdf-sha256"
    RSA_OAEP_SHA256 = "rsa-oaep-sha256"
    RSA_OAEP_SHA1 = "rsa-oaep-sha1"


def signature_algorithm_for(algorithm: KeyAlgorithm) -> SignatureAlgorithm:
    """The one signature algorithm a key type signs with: the algorithm follows the key."""
    if algorithm is KeyAlgorithm.EC_P256:
        return SignatureAlgorithm.ECDSA_P256_SHA256
    if algorithm is KeyAlgorithm.ED25519:
        return SignatureAlgorithm.ED25519
    return SignatureAlgorithm.RSA_PSS_SHA256


@dataclass(frozen=True)
class KeyHandle:
    """A reference to a private key inside a backend, with its public half.

    ``kem`` is the key-transport algorithm a decapsulation key accepts (for RSA on a
    token this may be ``rsa-oaep-sha1``); it is None for signing keys. Peers learn it
    from the key-exchange certificate so they encrypt accordingly.
    """

    label: str
    version: int
    usage: KeyUsage
    algorithm: KeyAlgorithm
    public_key: PublicKey
    kem: KemAlgorithm | None = None

    @property
    def signature_algorithm(self) -> SignatureAlgorithm:
        """The signature algorithm this key signs with."""
        return signature_algorithm_for(self.algorithm)

    def __repr__(self) -> str:
        usage, algorithm = self.usage.value, self.algorithm.value
        return f"KeyHandle({self.label!r} v{self.version}, {usage}, {algorithm})"


class KeyBackend(abc.ABC):
    """Key custody: private keys stay inside; callers hold ``KeyHandle``s."""

    #: Short name used in metrics and logs ("software", "pkcs11").
    name: str = "abstract"

    @abc.abstractmethod
    def generate(self, label: str, usage: KeyUsage, algorithm: KeyAlgorithm) -> KeyHandle:
        """Create a key pair under ``label`` (next version if the label exists)."""

    @abc.abstractmethod
    def import_key(self, label: str, usage: KeyUsage, private_key: PrivateKey) -> KeyHandle:
        """Bring an existing private key under the backend's custody (next version)."""

    @abc.abstractmethod
    def get(self, label: str, version: int | None = None) -> KeyHandle:
        """The key with this label: the given version, or the newest. Raises ``KeyNotFound``."""

    @abc.abstractmethod
    def list_keys(self) -> list[KeyHandle]:
        """Every key version the backend holds, sorted by label then version."""

    @abc.abstractmethod
    def delete(self, label: str, version: int | None = None) -> None:
        """Destroy one version, or every version when ``version`` is None."""

    @abc.abstractmethod
    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        """Sign ``data`` (the whole message; hashing is part of the algorithm).

        An ECDSA signature comes back low-S (s <= n/2), whichever s the token or OpenSSL
        picked: for every valid (r, s), (r, n - s) verifies too, and setpay makes and
        accepts only the low one on a SET message, so that a signed message has one valid
        encoding.
        """

    @abc.abstractmethod
    def decapsulate(self, key: KeyHandle, kem: KemAlgorithm, ciphertext: bytes) -> bytes:
        """Open a key transport.

        For ``p256-hkdf-sha256`` the ciphertext is the sender's ephemeral public point
        (SEC1 uncompressed) and the result is the raw ECDH shared secret; HKDF is the
        caller's. For RSA-OAEP the result is the decrypted plaintext.
        """

    @abc.abstractmethod
    def store_certificate(self, key: KeyHandle, der: bytes) -> None:
        """Keep a DER certificate beside the key (replacing any earlier one)."""

    @abc.abstractmethod
    def certificate(self, key: KeyHandle) -> bytes | None:
        """The DER certificate stored beside the key, if any."""

    def check_health(self) -> None:  # noqa: B027 - healthy unless a backend knows better
        """Raise ``TransientBackendError`` when the backend cannot serve right now."""

    def close(self) -> None:  # noqa: B027 - nothing to release unless a backend holds some
        """Release sessions and handles; the backend is unusable afterwards."""

    def __enter__(self) -> KeyBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
