"""``ForwardingBackend``: a real key backend behind a test double that changes one call.

Tests elsewhere wrap the bank's own backend to count what it signs or to fail as a
removed token does; they subclass this and override only that call.
"""

from __future__ import annotations

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage, PrivateKey


class ForwardingBackend(KeyBackend):
    """Every call goes to ``inner``, unchanged."""

    name = "forwarding"

    def __init__(self, inner: KeyBackend) -> None:
        self.inner = inner

    def generate(self, label: str, usage: KeyUsage, algorithm: KeyAlgorithm) -> KeyHandle:
        return self.inner.generate(label, usage, algorithm)

    def import_key(self, label: str, usage: KeyUsage, private_key: PrivateKey) -> KeyHandle:
        return self.inner.import_key(label, usage, private_key)

    def get(self, label: str, version: int | None = None) -> KeyHandle:
        return self.inner.get(label, version)

    def list_keys(self) -> list[KeyHandle]:
        return self.inner.list_keys()

    def delete(self, label: str, version: int | None = None) -> None:
        self.inner.delete(label, version)

    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        return self.inner.sign(key, data)

    def decapsulate(self, key: KeyHandle, kem: KemAlgorithm, ciphertext: bytes) -> bytes:
        return self.inner.decapsulate(key, kem, ciphertext)

    def store_certificate(self, key: KeyHandle, der: bytes) -> None:
        self.inner.store_certificate(key, der)

    def certificate(self, key: KeyHandle) -> bytes | None:
        return self.inner.certificate(key)
