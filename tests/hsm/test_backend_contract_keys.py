"""The KeyBackend contract's keys: labels and versions, listing and deleting, importing,
and the certificate stored beside each key.

Part of the one contract suite (``backend_contract``): every test here runs on every
backend, unchanged: software (ephemeral), software (keystore directory), PKCS#11 (SoftHSM).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyBackend, KeyUsage, PrivateKey
from hsm.errors import (
    InvalidCertificate,
    InvalidKeyLabel,
    InvalidKeyVersion,
    KeyNotFound,
    UnsupportedAlgorithm,
)

from .backend_contract import MESSAGE
from .keycheck import certificate_for, encapsulate, rsa_key_with_exponent, verify


@cache
def rsa_3072_key() -> rsa.RSAPrivateKey:
    """One RSA-3072 key per session: generating it costs about a second."""
    return rsa.generate_private_key(65537, 3072)


def test_versions_and_newest(backend: KeyBackend) -> None:
    first = backend.generate("rotating", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    second = backend.generate("rotating", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert (first.version, second.version) == (1, 2)
    assert backend.get("rotating").version == 2
    assert backend.get("rotating", 1).public_key == first.public_key
    assert backend.get("rotating", 2).public_key == second.public_key
    # An old version still signs: rotation must not break in-flight verifications.
    verify(first.public_key, backend.sign(first, MESSAGE), MESSAGE)


def test_list_keys_sorted_by_label_then_version(backend: KeyBackend) -> None:
    backend.generate("zeta", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("alpha", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
    backend.generate("zeta", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    listed = [(k.label, k.version, k.usage) for k in backend.list_keys()]
    assert listed == [
        ("alpha", 1, KeyUsage.SIGNATURE),
        ("zeta", 1, KeyUsage.SIGNATURE),
        ("zeta", 2, KeyUsage.KEY_EXCHANGE),
    ]


def test_delete_one_version_then_all(backend: KeyBackend) -> None:
    backend.generate("doomed", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("doomed", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("kept", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.delete("doomed", 2)
    assert backend.get("doomed").version == 1
    with pytest.raises(KeyNotFound, match="doomed"):
        backend.get("doomed", 2)
    backend.delete("doomed")
    with pytest.raises(KeyNotFound, match="doomed"):
        backend.get("doomed")
    assert [k.label for k in backend.list_keys()] == ["kept"]


def test_delete_unknown_raises_key_not_found(backend: KeyBackend) -> None:
    backend.generate("present", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    with pytest.raises(KeyNotFound, match="absent"):
        backend.delete("absent")
    with pytest.raises(KeyNotFound, match="present"):
        backend.delete("present", 7)


def test_deleted_key_cannot_sign(backend: KeyBackend) -> None:
    key = backend.generate("short-lived", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(key, MESSAGE)
    backend.delete("short-lived")
    with pytest.raises(KeyNotFound, match="short-lived"):
        backend.sign(key, MESSAGE)


def test_unknown_label_and_version(backend: KeyBackend) -> None:
    with pytest.raises(KeyNotFound, match="no-such-key"):
        backend.get("no-such-key")
    backend.generate("known", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    with pytest.raises(KeyNotFound, match="known"):
        backend.get("known", 2)
    with pytest.raises(InvalidKeyVersion, match="versions start at 1"):
        backend.get("known", 0)


@pytest.mark.parametrize("version", [True, False, "1", 1.0, 0, -1])
def test_versions_that_are_not_positive_ints_are_refused(backend: KeyBackend, version: Any) -> None:
    key = backend.generate("known", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    with pytest.raises(InvalidKeyVersion, match="invalid key version"):
        backend.get("known", version)
    with pytest.raises(InvalidKeyVersion, match="invalid key version"):
        backend.delete("known", version)
    # A handle with a forged version is refused too, not taken for version 1.
    with pytest.raises(InvalidKeyVersion, match="invalid key version"):
        backend.sign(replace(key, version=version), MESSAGE)
    assert backend.list_keys() == [key]


@pytest.mark.parametrize("label", ["", "-leading-dash", "has space", "slash/inside", "x" * 65])
def test_invalid_labels_are_refused(backend: KeyBackend, label: str) -> None:
    with pytest.raises(InvalidKeyLabel):
        backend.generate(label, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)


@pytest.mark.parametrize("label", ["..", "../outside", "keys/../../x", ""])
def test_invalid_labels_are_refused_on_lookup_and_delete(backend: KeyBackend, label: str) -> None:
    with pytest.raises(InvalidKeyLabel):
        backend.get(label)
    with pytest.raises(InvalidKeyLabel):
        backend.delete(label)


def _import_cases() -> list[tuple[str, PrivateKey, KeyAlgorithm]]:
    return [
        ("ec", ec.generate_private_key(ec.SECP256R1()), KeyAlgorithm.EC_P256),
        ("ed", ed25519.Ed25519PrivateKey.generate(), KeyAlgorithm.ED25519),
        ("rsa3072", rsa_3072_key(), KeyAlgorithm.RSA_3072),
    ]


def test_imported_keys_sign_like_generated_ones(backend: KeyBackend) -> None:
    for name, private_key, algorithm in _import_cases():
        key = backend.import_key(f"imported-{name}", KeyUsage.SIGNATURE, private_key)
        assert key.algorithm is algorithm
        assert key.public_key == private_key.public_key()
        verify(key.public_key, backend.sign(key, MESSAGE), MESSAGE)


def test_imported_key_exchange_keys_decapsulate(backend: KeyBackend) -> None:
    ec_private = ec.generate_private_key(ec.SECP256R1())
    ec_key = backend.import_key("imported-kex", KeyUsage.KEY_EXCHANGE, ec_private)
    point, expected = encapsulate(ec_key)
    assert backend.decapsulate(ec_key, KemAlgorithm.P256_HKDF_SHA256, point) == expected
    rsa_key = backend.import_key("imported-rsa-kex", KeyUsage.KEY_EXCHANGE, rsa_3072_key())
    assert rsa_key.kem is not None
    ciphertext, secret = encapsulate(rsa_key)
    assert backend.decapsulate(rsa_key, rsa_key.kem, ciphertext) == secret


def test_import_adds_a_version(backend: KeyBackend) -> None:
    backend.generate("shared-label", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    imported = backend.import_key(
        "shared-label", KeyUsage.SIGNATURE, ec.generate_private_key(ec.SECP256R1())
    )
    assert imported.version == 2


@pytest.mark.parametrize(
    ("private_key", "named"),
    [
        (ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
        (rsa.generate_private_key(65537, 1024), "RSA-1024"),
    ],
    ids=["p384", "rsa1024"],
)
def test_import_off_the_allow_list_is_refused(
    backend: KeyBackend, private_key: PrivateKey, named: str
) -> None:
    with pytest.raises(UnsupportedAlgorithm, match=named):
        backend.import_key("weak", KeyUsage.SIGNATURE, private_key)


@pytest.mark.parametrize("exponent", [3, 65539])
def test_import_of_an_rsa_key_of_another_exponent_is_refused(
    backend: KeyBackend, exponent: int
) -> None:
    # setcore refuses such a key from everyone: held, it would fail only once used (a CA's
    # every certificate, a bank key at its start), with a peer's ALGORITHM_NOT_ALLOWED.
    private_key = rsa_key_with_exponent(exponent)
    with pytest.raises(UnsupportedAlgorithm, match=f"RSA public exponent {exponent} is not"):
        backend.import_key("odd-e", KeyUsage.SIGNATURE, private_key)
    assert backend.list_keys() == []


def test_certificate_storage(backend: KeyBackend) -> None:
    key = backend.generate("with-cert", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    other = backend.generate("other", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert backend.certificate(key) is None
    first = certificate_for(key.public_key, "first")
    backend.store_certificate(key, first)
    assert backend.certificate(key) == first
    second = certificate_for(key.public_key, "second")
    backend.store_certificate(key, second)
    assert backend.certificate(key) == second
    assert backend.certificate(other) is None


def test_certificate_for_another_key_is_refused(backend: KeyBackend) -> None:
    key = backend.generate("with-cert", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(InvalidCertificate, match="does not certify key 'with-cert' v1"):
        backend.store_certificate(key, certificate_for(stranger))
    with pytest.raises(InvalidCertificate, match=r"not DER X\.509"):
        backend.store_certificate(key, b"\x30\x03\x02\x01\x01")
    assert backend.certificate(key) is None


def test_certificate_goes_with_its_key(backend: KeyBackend) -> None:
    key = backend.generate("with-cert", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.store_certificate(key, certificate_for(key.public_key))
    backend.delete("with-cert")
    recreated = backend.generate("with-cert", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert backend.certificate(recreated) is None
    with pytest.raises(KeyNotFound):
        backend.certificate(replace(key, version=9))


def test_handle_of_a_key_made_again_does_not_reach_the_new_key(backend: KeyBackend) -> None:
    # Every version deleted and the label generated again: version 1 is a new key. A
    # handle taken before names the old key and must get neither the new key's
    # signatures nor a certificate stored beside it.
    old = backend.generate("reborn", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(old, MESSAGE)
    backend.delete("reborn")
    new = backend.generate("reborn", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert new.version == 1 and new.public_key != old.public_key
    with pytest.raises(KeyNotFound, match="'reborn' v1 was deleted and made again"):
        backend.sign(old, MESSAGE)
    with pytest.raises(KeyNotFound, match="'reborn' v1 was deleted and made again"):
        backend.store_certificate(old, certificate_for(old.public_key))
    assert backend.certificate(new) is None
    assert backend.get("reborn") == new
    verify(new.public_key, backend.sign(new, MESSAGE), MESSAGE)
