"""The key backend's error tree.

Every backend translates its foreign errors (cryptography, python-pkcs11, OS errors)
into these, once, at its boundary, chaining the original with ``from``. Messages name
what is wrong (a label, a usage, a token) and never carry a PIN or key material.

    KeyBackendError
    ├── KeyNotFound            no key with that label (and version)
    ├── KeyExists              a key with that label and version is already there
    ├── KeyUsageError          the key's usage forbids the operation
    ├── InvalidKeyLabel        the label is not a valid key label
    ├── InvalidKeyVersion      the version is not a positive int (versions start at 1)
    ├── InvalidCertificate     the certificate is not DER X.509 or does not certify the key
    ├── UnsupportedAlgorithm   algorithm not allowed for this key or backend
    ├── InvalidKeyURI          the key URI cannot be parsed or names an unknown scheme
    ├── BackendNotAvailable    the URI is valid but this backend is not built in
    ├── DecapsulationError     the ciphertext could not be opened with the key
    ├── PermanentBackendError  misconfiguration: wrong PIN, unknown token, bad passphrase
    └── TransientBackendError  may succeed on retry: token gone, pool exhausted, device busy
"""

from __future__ import annotations


class KeyBackendError(Exception):
    """Base of every error a key backend raises."""

    transient: bool = False


class KeyNotFound(KeyBackendError):
    """No key with the requested label (and version)."""


class KeyExists(KeyBackendError):
    """A key with that label and version already exists."""


class KeyUsageError(KeyBackendError):
    """The operation is forbidden by the key's usage (e.g. a key-exchange key asked to sign)."""


class InvalidKeyLabel(KeyBackendError):
    """The label breaks the label rules (``hsm.policy.LABEL_PATTERN``)."""


class InvalidKeyVersion(KeyBackendError):
    """The version is not a positive ``int`` (a bool, a string, zero or below)."""


class InvalidCertificate(KeyBackendError):
    """The certificate cannot be parsed as DER X.509, or its public key is not the key's."""


class UnsupportedAlgorithm(KeyBackendError):
    """The algorithm is not on the allow-list for this key or backend."""


class InvalidKeyURI(KeyBackendError):
    """The key URI cannot be parsed, or names an unknown scheme."""


class BackendNotAvailable(KeyBackendError):
    """The key URI is valid but its backend is not available in this build."""


class DecapsulationError(KeyBackendError):
    """The KEM ciphertext could not be opened (wrong key, corrupted, or padding failure)."""


class PermanentBackendError(KeyBackendError):
    """A configuration error that retrying cannot fix (wrong PIN, unknown token, bad passphrase)."""


class TokenAbsent(PermanentBackendError):
    """The token is not in its module, in a process that never logged in to it: permanent
    for a start that never saw it (a token label mistyped), but a supervisor whose other
    processes have served may start such a process again once the token is back."""


class TransientBackendError(KeyBackendError):
    """An error that may clear on retry (token removed, session pool exhausted, device busy)."""

    transient = True
