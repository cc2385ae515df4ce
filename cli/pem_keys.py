"""The private key a ``setpay keys import`` is given: a PEM file, read and checked before any
key backend opens, so that a refused file makes nothing. No message holds the file's bytes."""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from hsm.base import PrivateKey
from hsm.errors import PermanentBackendError, UnsupportedAlgorithm
from hsm.pinsource import PinSource
from hsm.policy import PRIVATE_KEY_TYPES

#: A PEM private key file is a few kilobytes (RSA-3072 PKCS#8 is ~2.5 KiB).
MAX_PEM_BYTES = 64 * 1024


def read_private_key(path: str, passphrase_file: str | None) -> PrivateKey:
    """The private key in the PEM file ``path`` (decrypted with the passphrase in
    ``passphrase_file``, a file only its owner reads)."""
    password = None
    if passphrase_file:
        password = PinSource("file", passphrase_file).read().encode("utf-8")
    try:
        with open(path, "rb") as handle:
            pem = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot read {path}: {exc.strerror or type(exc).__name__}"
        ) from exc
    if len(pem) > MAX_PEM_BYTES:
        raise PermanentBackendError(f"{path} is larger than {MAX_PEM_BYTES} bytes")
    try:
        private_key = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as exc:
        # The library's message may say which of the two; neither reveals the key.
        raise PermanentBackendError(
            f"cannot load a private key from {path}: not a PEM private key, "
            "encrypted without --pem-passphrase-file, or wrong passphrase"
        ) from exc
    except CryptoUnsupportedAlgorithm as exc:
        # A curve the library does not read (sect163k1, prime192v2): no key setpay could
        # hold, nor a wrong passphrase.
        raise UnsupportedAlgorithm(
            f"cannot load a private key from {path}: its key type or curve is not one "
            "setpay reads (P-256, Ed25519, RSA-2048 or RSA-3072)"
        ) from exc
    if not isinstance(private_key, PRIVATE_KEY_TYPES):
        raise UnsupportedAlgorithm(f"{path} holds a key type setpay does not use")
    return private_key
