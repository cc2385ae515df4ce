"""Envelope length checks, each shown to refuse on its own (SET-PROTOCOL.md 1.3, 8.4),
on the software backend and on a SoftHSM token, whose errors for malformed input need
not be those of the software keys:

* an RSA key transport whose seed is not 32 bytes, in an envelope built whole around it
  (the AEAD opens, so only the seed check stands between a short, weak key and the
  plaintext);
* a P-256 KEM ciphertext that is not one uncompressed point, refused before the token
  is asked to decapsulate it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hsm.base import KemAlgorithm, KeyBackend, KeyUsage
from hsm.pkcs11 import Pkcs11Backend
from hsm.software import SoftwareBackend
from setcore import envelope
from setcore.envelope import Recipient, open_sealed, seal
from setcore.errors import ErrorCode
from setpay.v1 import crypto_pb2
from tests.hsm.testbed import session_softhsm

from .refusals import refused

CT = "setpay.v1.PITBE"
BACKENDS = ["software", pytest.param("softhsm", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def kex_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeyBackend]:
    """A backend to import key-exchange keys into: software, or a fresh SoftHSM token."""
    if request.param == "software":
        yield SoftwareBackend.ephemeral()
        return
    token = session_softhsm(tmp_path_factory).init_token()
    backend = Pkcs11Backend(token.config())
    yield backend
    backend.close()
    shutil.rmtree(token.directory, ignore_errors=True)


def _oaep(kem: KemAlgorithm) -> padding.OAEP:
    """The key transport padding of ``kem`` (a token's RSA key may do OAEP with SHA-1)."""
    digest = hashes.SHA1() if kem is KemAlgorithm.RSA_OAEP_SHA1 else hashes.SHA256()
    return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)


@pytest.mark.parametrize("seed_bytes", [0, 16, 31, 33, 64])
def test_a_whole_envelope_around_a_seed_of_another_length_is_refused(
    kex_backend: KeyBackend, seed_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = rsa.generate_private_key(65537, 2048)
    key = kex_backend.import_key("kex", KeyUsage.KEY_EXCHANGE, private)
    assert key.kem in (KemAlgorithm.RSA_OAEP_SHA256, KemAlgorithm.RSA_OAEP_SHA1)
    thumb = os.urandom(32)
    recipient = Recipient(private.public_key(), thumb, key.kem)

    def short(to: Recipient) -> tuple[bytes, bytes]:
        seed = os.urandom(seed_bytes)
        assert isinstance(to.public_key, rsa.RSAPublicKey)
        return seed, to.public_key.encrypt(seed, _oaep(to.kem))

    # The sealer keys the AEAD with the seed it chose: all but its length is right.
    monkeypatch.setattr(envelope, "encapsulate", short)
    sealed = seal(CT, b"p", recipient)
    reason = refused(
        ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, open_sealed, sealed, kex_backend, key, thumb, CT
    )
    assert reason == "key transport seed is not 32 bytes"


def test_a_p256_kem_ciphertext_of_another_length_is_refused(kex_backend: KeyBackend) -> None:
    key = kex_backend.import_key(
        "kex", KeyUsage.KEY_EXCHANGE, ec.generate_private_key(ec.SECP256R1())
    )
    assert key.kem is KemAlgorithm.P256_HKDF_SHA256
    thumb = os.urandom(32)
    good = seal(CT, b"p", Recipient(key.public_key, thumb, key.kem))
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), good.kem_ciphertext)
    compressed = point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    for kem_ciphertext in (b"", compressed, good.kem_ciphertext[1:], good.kem_ciphertext + b"\0"):
        sealed = crypto_pb2.Sealed()
        sealed.CopyFrom(good)
        sealed.kem_ciphertext = kem_ciphertext
        reason = refused(
            ErrorCode.ERROR_CODE_DECRYPTION_FAILURE,
            open_sealed,
            sealed,
            kex_backend,
            key,
            thumb,
            CT,
        )
        assert reason == "bad KEM ciphertext length", len(kem_ciphertext)
