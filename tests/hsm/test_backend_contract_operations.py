"""The KeyBackend contract's operations: each usage signs or decapsulates, in the
encodings X.509 and the KEMs name, and refuses every other use, KEM or input.

Part of the one contract suite (``backend_contract``): every test here runs on every
backend, unchanged: software (ephemeral), software (keystore directory), PKCS#11 (SoftHSM).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.exceptions import InvalidSignature

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyBackend, KeyUsage, SignatureAlgorithm
from hsm.errors import DecapsulationError, KeyUsageError, UnsupportedAlgorithm

from .backend_contract import MESSAGE
from .keycheck import encapsulate, verify

SIGNING_ALGORITHMS = [KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519, KeyAlgorithm.RSA_2048]


@pytest.mark.parametrize("algorithm", SIGNING_ALGORITHMS)
def test_generate_then_sign_verifies(backend: KeyBackend, algorithm: KeyAlgorithm) -> None:
    key = backend.generate("merchant-sig", KeyUsage.SIGNATURE, algorithm)
    assert (key.label, key.version, key.usage, key.algorithm) == (
        "merchant-sig",
        1,
        KeyUsage.SIGNATURE,
        algorithm,
    )
    assert key.kem is None
    signature = backend.sign(key, MESSAGE)
    verify(key.public_key, signature, MESSAGE)
    with pytest.raises(InvalidSignature):
        verify(key.public_key, signature, MESSAGE + b"!")


def test_signature_encodings_follow_x509(backend: KeyBackend) -> None:
    ec_key = backend.generate("ec", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    ed_key = backend.generate("ed", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
    rsa_key = backend.generate("rsa", KeyUsage.SIGNATURE, KeyAlgorithm.RSA_2048)
    ecdsa = backend.sign(ec_key, MESSAGE)
    assert ecdsa[0] == 0x30  # DER SEQUENCE (ECDSA-Sig-Value), not raw r||s
    assert len(backend.sign(ed_key, MESSAGE)) == 64
    assert len(backend.sign(rsa_key, MESSAGE)) == 256
    assert ec_key.signature_algorithm is SignatureAlgorithm.ECDSA_P256_SHA256
    assert rsa_key.signature_algorithm is SignatureAlgorithm.RSA_PSS_SHA256


def test_ca_signing_keys_sign(backend: KeyBackend) -> None:
    key = backend.generate("brand-ca", KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    verify(key.public_key, backend.sign(key, MESSAGE), MESSAGE)


@pytest.mark.parametrize("usage", [KeyUsage.KEY_EXCHANGE, KeyUsage.TOKEN_SEALING])
def test_ecdh_decapsulation_round_trip(backend: KeyBackend, usage: KeyUsage) -> None:
    key = backend.generate("gateway-kex", usage, KeyAlgorithm.EC_P256)
    assert key.kem is KemAlgorithm.P256_HKDF_SHA256
    ciphertext, expected = encapsulate(key)
    assert backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, ciphertext) == expected


def test_rsa_oaep_decapsulation_round_trip(backend: KeyBackend) -> None:
    key = backend.generate("gateway-kex-rsa", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    assert key.kem in (KemAlgorithm.RSA_OAEP_SHA256, KemAlgorithm.RSA_OAEP_SHA1)
    assert key.kem is not None
    ciphertext, expected = encapsulate(key)
    assert backend.decapsulate(key, key.kem, ciphertext) == expected


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_bytes_like_input_is_taken_as_bytes(backend: KeyBackend, wrap: type) -> None:
    # A token library takes any other iterable for a multi-part operation and answers
    # with a generator that would reach the token later, outside its session and lock.
    signer = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.RSA_2048)
    verify(signer.public_key, backend.sign(signer, wrap(MESSAGE)), MESSAGE)
    for algorithm in (KeyAlgorithm.RSA_2048, KeyAlgorithm.EC_P256):
        key = backend.generate(f"kex-{algorithm.value}", KeyUsage.KEY_EXCHANGE, algorithm)
        assert key.kem is not None
        ciphertext, expected = encapsulate(key)
        opened = backend.decapsulate(key, key.kem, wrap(ciphertext))
        assert type(opened) is bytes and opened == expected


def test_input_that_is_not_bytes_is_refused_before_the_backend(backend: KeyBackend) -> None:
    signer = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
    exchange = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    assert exchange.kem is not None
    with pytest.raises(TypeError, match="data to sign must be bytes, not str"):
        backend.sign(signer, MESSAGE.decode("latin-1"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ciphertext must be bytes, not list"):
        backend.decapsulate(exchange, exchange.kem, [bytes(256)])  # type: ignore[arg-type]


def test_key_exchange_key_cannot_sign(backend: KeyBackend) -> None:
    key = backend.generate("kex-only", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    with pytest.raises(KeyUsageError, match=r"'kex-only' v1 has usage key-exchange"):
        backend.sign(key, MESSAGE)


def test_token_sealing_key_cannot_sign(backend: KeyBackend) -> None:
    key = backend.generate("sealer", KeyUsage.TOKEN_SEALING, KeyAlgorithm.RSA_2048)
    with pytest.raises(KeyUsageError, match=r"'sealer' v1 has usage token-sealing"):
        backend.sign(key, MESSAGE)


@pytest.mark.parametrize("usage", [KeyUsage.SIGNATURE, KeyUsage.CA_SIGNING])
def test_signing_key_cannot_decapsulate(backend: KeyBackend, usage: KeyUsage) -> None:
    key = backend.generate("signer", usage, KeyAlgorithm.EC_P256)
    point, _ = encapsulate(replace(key, kem=KemAlgorithm.P256_HKDF_SHA256))
    with pytest.raises(KeyUsageError, match=rf"'signer' v1 has usage {usage.value}"):
        backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, point)


def test_forged_handle_does_not_grant_usage(backend: KeyBackend) -> None:
    key = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    forged = replace(key, usage=KeyUsage.SIGNATURE, kem=None)
    with pytest.raises(KeyUsageError, match="key-exchange"):
        backend.sign(forged, MESSAGE)


def test_ed25519_cannot_be_a_key_exchange_key(backend: KeyBackend) -> None:
    with pytest.raises(UnsupportedAlgorithm, match="ed25519"):
        backend.generate("ed-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.ED25519)


def test_wrong_kem_is_refused(backend: KeyBackend) -> None:
    ec_key = backend.generate("ec-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    rsa_key = backend.generate("rsa-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    point, _ = encapsulate(ec_key)
    with pytest.raises(UnsupportedAlgorithm, match="accepts p256-hkdf-sha256"):
        backend.decapsulate(ec_key, KemAlgorithm.RSA_OAEP_SHA256, point)
    other = (
        KemAlgorithm.RSA_OAEP_SHA1
        if rsa_key.kem is KemAlgorithm.RSA_OAEP_SHA256
        else KemAlgorithm.RSA_OAEP_SHA256
    )
    ciphertext, _ = encapsulate(rsa_key, other)
    with pytest.raises(UnsupportedAlgorithm, match=f"not {other.value}"):
        backend.decapsulate(rsa_key, other, ciphertext)


def test_tampered_oaep_ciphertext_gives_bare_decapsulation_error(backend: KeyBackend) -> None:
    key = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    assert key.kem is not None
    ciphertext, _ = encapsulate(key)
    for tampered in (
        ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]),
        bytes(len(ciphertext)),
        ciphertext[:100],
        b"",
    ):
        with pytest.raises(DecapsulationError) as caught:
            backend.decapsulate(key, key.kem, tampered)
        # No detail and no chained cause: nothing a padding oracle could read.
        assert str(caught.value) == "decapsulation failed"
        assert caught.value.__cause__ is None


def test_bad_ecdh_points_give_decapsulation_error(backend: KeyBackend) -> None:
    key = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    point, _ = encapsulate(key)
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    compressed = bytes([0x02]) + point[1:33]
    for bad in (off_curve, compressed, point[:64], b"\x04" + bytes(64), b""):
        with pytest.raises(DecapsulationError) as caught:
            backend.decapsulate(key, KemAlgorithm.P256_HKDF_SHA256, bad)
        assert str(caught.value) == "decapsulation failed"
        assert caught.value.__cause__ is None
