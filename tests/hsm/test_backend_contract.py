"""The KeyBackend contract: every test here runs on every backend, unchanged.

Backends: software (ephemeral), software (keystore directory), PKCS#11 (SoftHSM).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hsm.base import (
    KemAlgorithm,
    KeyAlgorithm,
    KeyBackend,
    KeyUsage,
    PrivateKey,
    SignatureAlgorithm,
)
from hsm.errors import (
    DecapsulationError,
    InvalidCertificate,
    InvalidKeyLabel,
    InvalidKeyVersion,
    KeyNotFound,
    KeyUsageError,
    PermanentBackendError,
    UnsupportedAlgorithm,
)

from .keycheck import certificate_for, encapsulate, verify
from .testbed import BackendFactory

SIGNING_ALGORITHMS = [KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519, KeyAlgorithm.RSA_2048]
MESSAGE = b"AuthReq to-be-signed bytes \x00\x01\x02"


@cache
def rsa_3072_key() -> rsa.RSAPrivateKey:
    """One RSA-3072 key per session: generating it costs about a second."""
    return rsa.generate_private_key(65537, 3072)


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


def test_threads_sign_concurrently(backend: KeyBackend) -> None:
    key = backend.generate("busy", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    errors: list[BaseException] = []
    signatures: list[bytes] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            for n in range(200):
                data = f"{index}:{n}".encode()
                signature = backend.sign(key, data)
                verify(key.public_key, signature, data)
                with lock:
                    signatures.append(signature)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(signatures) == 8 * 200


def test_keys_persist_across_reopen(persistent_backend_factory: BackendFactory) -> None:
    backend_factory = persistent_backend_factory
    first = backend_factory.open()
    signing = first.generate("durable", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    kex = first.generate("durable-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048)
    first.store_certificate(signing, certificate_for(signing.public_key))
    first.close()
    second = backend_factory.open()
    try:
        assert [(k.label, k.version, k.usage) for k in second.list_keys()] == [
            ("durable", 1, KeyUsage.SIGNATURE),
            ("durable-kex", 1, KeyUsage.KEY_EXCHANGE),
        ]
        reopened = second.get("durable")
        assert reopened.public_key == signing.public_key
        verify(reopened.public_key, second.sign(reopened, MESSAGE), MESSAGE)
        assert second.certificate(reopened) is not None
        reopened_kex = second.get("durable-kex")
        assert reopened_kex.kem is kex.kem is not None
        ciphertext, secret = encapsulate(reopened_kex)
        assert second.decapsulate(reopened_kex, kex.kem, ciphertext) == secret
        with pytest.raises(KeyUsageError):
            second.sign(reopened_kex, MESSAGE)
    finally:
        second.close()


def test_second_backend_sees_keys_of_the_first(
    persistent_backend_factory: BackendFactory,
) -> None:
    backend_factory = persistent_backend_factory
    writer = backend_factory.open()
    reader = backend_factory.open()
    try:
        reader.list_keys()  # the reader's catalog is now stale
        made = writer.generate("late", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        found = reader.get("late")
        assert found.public_key == made.public_key
        verify(found.public_key, reader.sign(found, MESSAGE), MESSAGE)
    finally:
        writer.close()
        reader.close()


def test_key_deleted_through_another_backend_is_not_used_here(
    persistent_backend_factory: BackendFactory,
) -> None:
    # Another backend over the same keystore or token stands for another process: once
    # its delete returns, this one neither signs nor decapsulates with the key, nor
    # stores or reads its certificate, whatever it has cached, and a key made again
    # under the label is another key.
    this = persistent_backend_factory.open()
    other = persistent_backend_factory.open()
    try:
        signing = this.generate("doomed", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        kex = this.generate("doomed-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
        # One key per certificate call: the first call to find its key gone makes this
        # backend forget the key, and a second call would only test the forgetting.
        certified = this.generate("doomed-certified", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        uncertified = this.generate("doomed-uncertified", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        this.sign(signing, MESSAGE)  # the key (or its token object) is cached now
        point, _ = encapsulate(kex)
        this.decapsulate(kex, KemAlgorithm.P256_HKDF_SHA256, point)
        this.store_certificate(certified, certificate_for(certified.public_key))
        assert this.certificate(certified) is not None
        assert this.certificate(uncertified) is None
        for label in ("doomed", "doomed-kex", "doomed-certified", "doomed-uncertified"):
            other.delete(label)
        with pytest.raises(KeyNotFound, match="doomed"):
            this.sign(signing, MESSAGE)
        with pytest.raises(KeyNotFound, match="doomed-kex"):
            this.decapsulate(kex, KemAlgorithm.P256_HKDF_SHA256, point)
        with pytest.raises(KeyNotFound, match="doomed-certified"):
            this.certificate(certified)
        with pytest.raises(KeyNotFound, match="doomed-uncertified"):
            this.store_certificate(uncertified, certificate_for(uncertified.public_key))
        made = other.generate("doomed", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        with pytest.raises(KeyNotFound):
            this.sign(signing, MESSAGE)
        found = this.get("doomed")
        assert found.public_key == made.public_key
        verify(found.public_key, this.sign(found, MESSAGE), MESSAGE)
    finally:
        this.close()
        other.close()


def test_closed_backend_refuses_work(backend_factory: BackendFactory) -> None:
    opened = backend_factory.open(observer=lambda *_: None)
    key = opened.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    opened.check_health()
    opened.close()
    with pytest.raises(PermanentBackendError, match="closed"):
        opened.sign(key, MESSAGE)
    with pytest.raises(PermanentBackendError, match="closed"):
        opened.check_health()


def test_observer_sees_each_operation(backend_factory: BackendFactory) -> None:
    seen: list[tuple[str, str, str | None]] = []

    def observer(op: str, algorithm: str, seconds: float, error_kind: str | None) -> None:
        assert seconds >= 0
        seen.append((op, algorithm, error_kind))

    opened = backend_factory.open(observer)
    try:
        signing = opened.generate("obs-sig", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
        kex = opened.generate("obs-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
        opened.sign(signing, MESSAGE)
        point, _ = encapsulate(kex)
        opened.decapsulate(kex, KemAlgorithm.P256_HKDF_SHA256, point)
        with pytest.raises(KeyUsageError):
            opened.sign(kex, MESSAGE)
        with pytest.raises(DecapsulationError):
            opened.decapsulate(kex, KemAlgorithm.P256_HKDF_SHA256, b"\x04" + bytes(64))
    finally:
        opened.close()
    operations = [entry for entry in seen if entry[0] in ("sign", "decapsulate")]
    assert operations == [
        ("sign", "ed25519", None),
        ("decapsulate", "p256-hkdf-sha256", None),
        ("sign", "ecdsa-p256-sha256", "KeyUsageError"),
        ("decapsulate", "p256-hkdf-sha256", "DecapsulationError"),
    ]
