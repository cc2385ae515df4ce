"""The KeyBackend contract over a backend's lifetime: threads at once, keys kept across
a reopening, other backends over the same keys, a closed backend, the observer.

Part of the one contract suite (``backend_contract``): every test here runs on every
backend, unchanged: software (ephemeral), software (keystore directory), PKCS#11 (SoftHSM).
"""

from __future__ import annotations

import threading

import pytest

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyBackend, KeyUsage
from hsm.errors import DecapsulationError, KeyNotFound, KeyUsageError, PermanentBackendError

from .backend_contract import MESSAGE
from .keycheck import certificate_for, encapsulate, verify
from .testbed import BackendFactory


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
