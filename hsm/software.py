"""Software key backend: private keys held by this process, in memory or in a keystore.

NOT AN HSM. The private keys are ordinary objects in this process's memory (and, for a
keystore, encrypted files on disk: see ``hsm.keystore``). A bug in or an attacker on the
host can read them. It exists so that tests, the demo and development run without a
token, and it is the test double for ``KeyBackend``: it passes the same contract suite
as the PKCS#11 backend.

Two modes:
    ``SoftwareBackend.ephemeral()``        keys live and die with the object
    ``SoftwareBackend.open(dir, secret)``  keys persist in a keystore directory

Decrypted private keys are cached in memory: unlocking PKCS#8 on every signature would
put a KDF on the hot path. All methods are thread-safe; ``cryptography`` releases the GIL
during the private-key work, so signatures from several threads run in parallel.

What it promises about keys changed by another process sharing the keystore is what
the PKCS#11 backend does about objects changed on its token by another process: once a
``delete`` has returned anywhere, no operation here uses that key any more (``sign``,
``decapsulate`` and the certificate calls raise ``KeyNotFound``), and a label deleted and
made again elsewhere is another key, which handles of the old one do not reach. The
cache saves the decryption, never the check: every operation first compares the
version's JSON file with the stamp it had when this process loaded the key (one
``stat``; see ``hsm.keystore``) and drops the cached key when it differs. ``get`` and
``list_keys`` are lookups, as on a token: ``get`` may return a key that was deleted
elsewhere, and the next operation with it says so. Within this process the same holds
between threads: the cached key (or certificate) is read in the same hold of the lock
that finds the handle's version still held, so a label deleted and made again by another
thread between the check of a handle and that read is ``KeyNotFound``, never the new key.

Errors raised are those of ``hsm.errors``.
"""

from __future__ import annotations

import os
import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hsm.base import (
    KemAlgorithm,
    KeyAlgorithm,
    KeyBackend,
    KeyHandle,
    KeyUsage,
    PrivateKey,
)
from hsm.errors import DecapsulationError, KeyNotFound, PermanentBackendError
from hsm.keystore import KeyStamp, Keystore
from hsm.observer import Observer, observed
from hsm.pinsource import PinSource
from hsm.policy import (
    P256_POINT_LENGTH,
    PSS_SALT_LENGTH,
    RSA_PUBLIC_EXPONENT,
    algorithm_of_private,
    as_bytes,
    check_certificate,
    check_combination,
    check_label,
    check_same_key,
    check_version,
    default_kem,
    low_s_signature,
    require_decapsulate,
    require_sign,
)

_KeyId = tuple[str, int]


class SoftwareBackend(KeyBackend):
    """Keys in process memory, optionally persisted to a keystore (not an HSM)."""

    name = "software"

    def __init__(self, keystore: Keystore | None, observer: Observer | None = None) -> None:
        self._keystore = keystore
        self._observer = observer
        self._lock = threading.RLock()
        self._handles: dict[_KeyId, KeyHandle] = {}
        self._private: dict[_KeyId, PrivateKey] = {}
        self._certificates: dict[_KeyId, bytes] = {}
        # Keystore only: each held version's stamp when this process read it.
        self._stamps: dict[_KeyId, KeyStamp] = {}
        self._closed = False
        if keystore is not None:
            self._refresh(keystore)

    @classmethod
    def ephemeral(cls, observer: Observer | None = None) -> SoftwareBackend:
        """A backend whose keys exist only in this object's memory."""
        return cls(None, observer)

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        passphrase: str | PinSource,
        observer: Observer | None = None,
        *,
        create: bool = True,
    ) -> SoftwareBackend:
        """A backend over the keystore in ``directory`` (created if absent, if ``create``;
        otherwise refused: commands that only read or remove keys make no keystore)."""
        secret = passphrase.read() if isinstance(passphrase, PinSource) else passphrase
        backend = cls(Keystore.open(directory, secret, create=create), observer)
        # Decrypt the newest key now: a keystore whose files were written under another
        # passphrase should fail at start, not on the first payment.
        with backend._lock:
            if backend._handles:
                newest = max(backend._handles.values(), key=lambda h: (h.version, h.label))
                backend._private_key(newest)
        return backend

    def generate(self, label: str, usage: KeyUsage, algorithm: KeyAlgorithm) -> KeyHandle:
        """Create a key pair under ``label`` (next version if the label exists)."""
        check_label(label)
        check_combination(usage, algorithm)
        private_key: PrivateKey
        if algorithm is KeyAlgorithm.EC_P256:
            private_key = ec.generate_private_key(ec.SECP256R1())
        elif algorithm is KeyAlgorithm.ED25519:
            private_key = ed25519.Ed25519PrivateKey.generate()
        else:
            private_key = rsa.generate_private_key(RSA_PUBLIC_EXPONENT, algorithm.rsa_bits)
        return self._add(label, usage, algorithm, private_key)

    def import_key(self, label: str, usage: KeyUsage, private_key: PrivateKey) -> KeyHandle:
        """Bring an existing private key under the backend's custody (next version)."""
        check_label(label)
        algorithm = algorithm_of_private(private_key)
        check_combination(usage, algorithm)
        return self._add(label, usage, algorithm, private_key)

    def get(self, label: str, version: int | None = None) -> KeyHandle:
        """The key with this label: the given version, or the newest."""
        check_label(label)
        check_version(version)
        with self._lock:
            self._check_open()
            found = self._find(label, version)
            if found is None and self._keystore is not None:
                self._refresh(self._keystore)  # another process may have added it
                found = self._find(label, version)
        if found is None:
            which = "" if version is None else f" v{version}"
            raise KeyNotFound(f"no key {label!r}{which}")
        return found

    def list_keys(self) -> list[KeyHandle]:
        """Every key version held, sorted by label then version."""
        with self._lock:
            self._check_open()
            if self._keystore is not None:
                self._refresh(self._keystore)
            return sorted(self._handles.values(), key=lambda h: (h.label, h.version))

    def delete(self, label: str, version: int | None = None) -> None:
        """Destroy one version, or every version when ``version`` is None."""
        check_label(label)
        check_version(version)
        with self._lock:
            self._check_open()
            if self._keystore is not None:
                removed = self._keystore.remove(label, version)
            else:
                removed = [
                    v for (name, v) in self._handles if name == label and version in (None, v)
                ]
                if not removed:
                    which = "any version" if version is None else f"v{version}"
                    raise KeyNotFound(f"no key {label!r} ({which})")
            for number in removed:
                self._forget((label, number))

    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        """Sign ``data`` with the key's algorithm (SHA-256 inside)."""
        data = as_bytes(data, "data to sign")
        with observed(self._observer, "sign", key.signature_algorithm.value):
            record = self._record(key)
            require_sign(record)
            private_key = self._private_key(record)
            if isinstance(private_key, ec.EllipticCurvePrivateKey):
                der = private_key.sign(data, ec.ECDSA(hashes.SHA256()))
                return low_s_signature(*decode_dss_signature(der))
            if isinstance(private_key, ed25519.Ed25519PrivateKey):
                return private_key.sign(data)
            return private_key.sign(
                data,
                padding.PSS(padding.MGF1(hashes.SHA256()), PSS_SALT_LENGTH),
                hashes.SHA256(),
            )

    def decapsulate(self, key: KeyHandle, kem: KemAlgorithm, ciphertext: bytes) -> bytes:
        """Open a key transport: ECDH shared secret or OAEP plaintext."""
        ciphertext = as_bytes(ciphertext, "ciphertext")
        with observed(self._observer, "decapsulate", kem.value):
            record = self._record(key)
            require_decapsulate(record, kem)
            private_key = self._private_key(record)
            try:
                if isinstance(private_key, ec.EllipticCurvePrivateKey):
                    if len(ciphertext) != P256_POINT_LENGTH:
                        raise ValueError("not an uncompressed P-256 point")
                    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ciphertext)
                    return private_key.exchange(ec.ECDH(), peer)
                if isinstance(private_key, rsa.RSAPrivateKey):
                    # SHA-1 only inside OAEP, for keys whose handle says rsa-oaep-sha1; OAEP
                    # does not rely on collision resistance (SET-PROTOCOL.md 8.4).
                    legacy = kem is KemAlgorithm.RSA_OAEP_SHA1
                    digest: hashes.HashAlgorithm = hashes.SHA1() if legacy else hashes.SHA256()  # noqa: S303
                    return private_key.decrypt(
                        ciphertext, padding.OAEP(padding.MGF1(digest), digest, None)
                    )
            except ValueError:
                # No chained cause and no detail: which check failed is exactly what a
                # padding oracle needs, and a cause travels into logs and error mappers.
                raise DecapsulationError("decapsulation failed") from None
            raise DecapsulationError("decapsulation failed")

    def store_certificate(self, key: KeyHandle, der: bytes) -> None:
        """Keep a DER certificate beside the key (replacing any earlier one)."""
        record = self._record(key)
        check_certificate(record, der)
        with self._lock:
            self._check_held(record)
            if self._keystore is not None:
                self._keystore.write_certificate(record, der)
            else:
                self._certificates[(record.label, record.version)] = der

    def certificate(self, key: KeyHandle) -> bytes | None:
        """The DER certificate stored beside the key, if any."""
        record = self._record(key)
        with self._lock:
            self._check_held(record)
            # Read through for a keystore: another process (the CA CLI) may have stored it.
            if self._keystore is not None:
                der = self._keystore.read_certificate(record)
                # Removal unlinks the JSON file first, a new version writes it last: the
                # stamp unchanged after the read, the file read was this version's.
                key_id = (record.label, record.version)
                if self._keystore.stamp(*key_id) != self._stamps.get(key_id):
                    self._forget(key_id)
                    raise KeyNotFound(
                        f"key {record.label!r} v{record.version} was deleted and made again "
                        "since this handle was taken: get the key again"
                    )
                return der
            return self._certificates.get((record.label, record.version))

    def check_health(self) -> None:
        """Raise if closed; a software backend is otherwise always able to serve."""
        with self._lock:
            self._check_open()

    def close(self) -> None:
        """Drop every cached private key; the backend is unusable afterwards."""
        with self._lock:
            self._closed = True
            self._private.clear()
            self._handles.clear()
            self._certificates.clear()
            self._stamps.clear()

    def _add(
        self, label: str, usage: KeyUsage, algorithm: KeyAlgorithm, private_key: PrivateKey
    ) -> KeyHandle:
        kem = default_kem(usage, algorithm)
        with self._lock:
            self._check_open()
            if self._keystore is not None:
                handle, stamp = self._keystore.add(label, usage, kem, private_key)
                self._stamps[(label, handle.version)] = stamp
            else:
                version = 1 + max((v for (name, v) in self._handles if name == label), default=0)
                handle = KeyHandle(label, version, usage, algorithm, private_key.public_key(), kem)
            self._handles[(label, handle.version)] = handle
            self._private[(label, handle.version)] = private_key
            return handle

    def _record(self, key: KeyHandle) -> KeyHandle:
        """The backend's own record of ``key``: its usage, not the caller's copy, is law."""
        # Every sign and decapsulate comes here: a held version is one dictionary lookup
        # (and, with a keystore, one stat); anything else (a bad label, a version another
        # process made or changed) takes ``get``'s way.
        # A forged version (True would find v1) is refused before the lookup.
        check_version(key.version)
        key_id = (key.label, key.version)
        stamp = None
        if self._keystore is not None:
            stamp = self._keystore.stamp(key.label, key.version)  # checks the label first
        with self._lock:
            self._check_open()
            found = self._handles.get(key_id)
            if (
                found is not None
                and self._keystore is not None
                and stamp != self._stamps.get(key_id)
            ):
                # Deleted, or deleted and made again, by another process since we read it.
                self._forget(key_id)
                found = None
        if found is None:
            found = self.get(key.label, key.version)
        check_same_key(found, key)
        return found

    def _private_key(self, record: KeyHandle) -> PrivateKey:
        key_id = (record.label, record.version)
        with self._lock:
            self._check_held(record)
            cached = self._private.get(key_id)
            if cached is not None:
                return cached
            if self._keystore is None:
                raise KeyNotFound(f"no key {record.label!r} v{record.version}")
            private_key = self._keystore.load_private(record)
            if private_key.public_key() != record.public_key:
                # A version made again elsewhere changes its JSON file's stamp (removal
                # unlinks that file first, a new version writes it last): only then is
                # it another key. With the stamp we read, the key file itself is wrong.
                held = self._stamps.get(key_id)
                if held is not None and self._keystore.stamp(*key_id) == held:
                    path = self._keystore.key_file(record.label, record.version)
                    raise PermanentBackendError(
                        f"keystore entry {path}: key file does not hold the key of "
                        f"{record.version}.pub.pem (damaged or swapped)"
                    )
                self._forget(key_id)
                raise KeyNotFound(
                    f"key {record.label!r} v{record.version} was deleted and made again "
                    "since this handle was taken: get the key again"
                )
            self._private[key_id] = private_key
            return private_key

    def _check_held(self, record: KeyHandle) -> None:
        """Raise unless ``record`` is still the version held: call under the lock.

        ``_record`` checks a handle and lets the lock go; another thread may then delete
        the label and make it again, and the cache under that label and version holds the
        new key. Checked in the same hold of the lock as the cache read after it, the key
        read is the handle's (``_add`` and ``_forget`` change handle and key together).
        """
        self._check_open()
        held = self._handles.get((record.label, record.version))
        if held is None:
            raise KeyNotFound(f"no key {record.label!r} v{record.version}")
        check_same_key(held, record)

    def _find(self, label: str, version: int | None) -> KeyHandle | None:
        if version is not None:
            return self._handles.get((label, version))
        versions = [v for (name, v) in self._handles if name == label]
        return self._handles[(label, max(versions))] if versions else None

    def _refresh(self, keystore: Keystore) -> None:
        """Reload the handle list from the keystore, keeping still-valid cached keys."""
        entries = {(h.label, h.version): (h, stamp) for h, stamp in keystore.scan()}
        for key_id in set(self._handles) - set(entries):
            self._forget(key_id)
        for key_id, (handle, stamp) in entries.items():
            known = self._handles.get(key_id)
            if known is None:
                continue
            if known != handle or self._stamps.get(key_id) != stamp:
                # Same label and version, another file: deleted and recreated elsewhere.
                self._forget(key_id)
            else:
                # The same version: keep the handle callers were given, so that
                # ``check_same_key`` finds their copy by identity, not by comparing public
                # keys (1.3 us a use, measured; the bank lists its keys after taking them).
                entries[key_id] = (known, stamp)
        self._handles = {key_id: handle for key_id, (handle, _) in entries.items()}
        self._stamps = {key_id: stamp for key_id, (_, stamp) in entries.items()}

    def _forget(self, key_id: _KeyId) -> None:
        self._handles.pop(key_id, None)
        self._private.pop(key_id, None)
        self._certificates.pop(key_id, None)
        self._stamps.pop(key_id, None)

    def _check_open(self) -> None:
        if self._closed:
            raise PermanentBackendError("software key backend is closed")
