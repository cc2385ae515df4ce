"""The software backend's directory of keys: encrypted PKCS#8 files with JSON metadata.

NOT AN HSM. Private keys sit in files on the host, encrypted under a passphrase; anyone
who gets both the files and the passphrase (or the memory of a running process) gets the
keys. Use it for development, tests and the demo; use a PKCS#11 token for real keys.

Layout (directory 0700, every file 0600, every write atomic: temp file, fsync, rename,
fsync of the directory):

    DIR/keystore.json                  format, scrypt salt and parameters, passphrase check
    DIR/.lock                          flock held while a version is claimed or removed
    DIR/keys/LABEL/N.key.pem           version N's private key, encrypted PKCS#8
    DIR/keys/LABEL/N.pub.pem           its public key (SubjectPublicKeyInfo)
    DIR/keys/LABEL/N.json              label, version, usage, algorithm, kem, their MAC
    DIR/keys/LABEL/N.cert.der          the certificate stored beside it, if any

A version exists once its JSON file exists (written last), so a crash mid-write leaves
no half key behind. The JSON file's stamp (``KeyStamp``: device, inode, size,
modification and change times) tells a reader cheaply whether the version it loaded is
still there and still the same: a version deleted and written again is a new file.
A removal cut short leaves files of a number no version holds: the next version given
that number clears its certificate before anything else. Certificates are written under
the lock, beside the very public key they were checked against.

PKCS#8 encryption in ``cryptography`` is PBES2 with only 2048 PBKDF2 rounds, too few for
a passphrase; so the passphrase is first stretched with scrypt (salt per keystore) and
the result is the PKCS#8 password. The scrypt runs once per open (``hsm.keystore_header``).

A key version's metadata decides what its key may do, so N.json holds an HMAC, under a
key derived from the passphrase, of its fields and of N.pub.pem; a version whose files
do not match it is refused as damaged or altered when loaded (``hsm.keystore_metadata``).

Keystores from before (header format 1 or 2, N.json without MAC) are refused at open:
only the operator upgrades one, once (``Keystore.upgrade``, ``hsm.keystore_upgrade``).

Errors raised (``hsm.errors``): ``PermanentBackendError`` (wrong passphrase, not a
keystore, unsafe permissions, corrupt file), ``TransientBackendError`` (lock held too
long), ``KeyNotFound``.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from hsm.base import KemAlgorithm, KeyHandle, KeyUsage, PrivateKey, PublicKey
from hsm.errors import KeyNotFound, PermanentBackendError
from hsm.filelock import exclusive_lock
from hsm.keystore_header import (
    LEGACY_HEADER_FORMATS,
    KeystoreSecrets,
    authenticated_header,
    header_temp_files,
    metadata_authenticated,
    new_header,
    unlock,
)
from hsm.keystore_metadata import FORMAT, checked_handle, metadata_file, version_of_file
from hsm.keystore_upgrade import Upgrade, legacy_refusal, plan_upgrade, refuse_unupgradable
from hsm.policy import (
    LABEL_PATTERN,
    PRIVATE_KEY_TYPES,
    algorithm_of_public,
    check_label,
)

#: Key versions are claimed under a lock; a holder that takes longer than this is stuck.
LOCK_TIMEOUT_SECONDS = 10.0

#: Metadata and certificate files are small; refuse anything larger as not ours.
MAX_FILE_BYTES = 64 * 1024

#: A key version's JSON file as ``os.stat`` sees it: (device, inode, size, mtime, ctime).
KeyStamp = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class _Paths:
    """File names of one key version."""

    key: Path
    public: Path
    meta: Path
    cert: Path


class Keystore:
    """A keystore directory opened with its passphrase (``Keystore.open``)."""

    def __init__(self, directory: Path, unlocked: KeystoreSecrets) -> None:
        self._directory = directory
        self._secrets = unlocked
        # Each version's JSON path as a string, made once: ``stamp`` runs for every sign
        # and decapsulate, and building the paths each time cost more than the stat
        # (about 12 us against 2 per operation, measured). One entry per key version.
        self._meta_paths: dict[tuple[str, int], str] = {}

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], passphrase: str, *, create: bool = True
    ) -> Keystore:
        """Open (creating if absent or empty, if ``create``: a mistyped path is otherwise
        refused, nothing made) a keystore; check the passphrase."""
        root = Path(directory)
        if not passphrase:
            raise PermanentBackendError(f"empty passphrase for keystore {root}")
        header_path = root / "keystore.json"
        if not create and not os.path.exists(header_path):
            raise PermanentBackendError(f"no keystore at {root}: check the path")
        _ensure_private_dir(root)
        if not header_path.exists():
            header_temp_files(root)  # refuses a foreign directory, before any .lock in it
            with exclusive_lock(str(root / ".lock"), LOCK_TIMEOUT_SECONDS):
                if not header_path.exists():
                    # Every header is written under this lock: a temp file now is a killed
                    # opener's, not one being written.
                    for temp in header_temp_files(root):
                        _unlink(temp)
                    header, unlocked = new_header(passphrase)
                    _write_atomic(header_path, json.dumps(header).encode())
                    return cls(root, unlocked)
        header = _read_json(header_path)
        if header.get("format") in LEGACY_HEADER_FORMATS:
            raise legacy_refusal(root)  # before any lock or write: read-only copies too
        return cls(root, unlock(root, header, passphrase))

    @classmethod
    def upgrade(
        cls,
        directory: str | os.PathLike[str],
        passphrase: str,
        show: Callable[[Upgrade], None],
        *,
        dry_run: bool = False,
        check: Callable[[KeyHandle, bytes], str | None] | None = None,
    ) -> Upgrade:
        """Upgrade an older keystore to format 3: each N.json gets its MAC, the header last.

        Under the lock, the header read under it; a ``dry_run`` takes none, writes nothing.
        Each version with a certificate must agree with it (``check_certificates``, with the
        caller's ``check``: one refusal names all), one with a MAC already (an upgrade cut
        short, or replayed) must verify, or nothing is written. ``show`` is given every
        version before anything is (it may raise: nothing is). A cut upgrade leaves an old
        keystore, which the next finishes. Format 3: no-op.
        """
        root = Path(directory)
        refuse_unupgradable(root, passphrase)
        _ensure_private_dir(root)  # there: its mode is checked, nothing made
        with (
            nullcontext() if dry_run else exclusive_lock(str(root / ".lock"), LOCK_TIMEOUT_SECONDS)
        ):
            header = _read_json(root / "keystore.json")
            keystore = cls(root, unlock(root, header, passphrase))
            if metadata_authenticated(header):
                return Upgrade((), (), (), 0, needed=False, written=False)
            checked = []
            for label, version in sorted(keystore._entries()):
                found = keystore._read_entry(label, version)
                if found is not None:
                    path = keystore._paths(label, version).meta
                    entry = (label, version, path)
                    handle = checked_handle(keystore._secrets, entry, *found, upgrading=True)
                    checked.append((handle, path, found[1], found[0].get("format") == FORMAT))
            marked = [(handle, has_mac) for handle, _, _, has_mac in checked]
            plan, stale = plan_upgrade(root, marked, keystore.read_certificate, check)
            show(plan)
            if dry_run:
                return plan
            for temp in stale:
                _unlink(temp)
            for handle, path, public_pem, has_mac in checked:
                if not has_mac:
                    _write_atomic(path, metadata_file(keystore._secrets, handle, public_pem))
            upgraded = authenticated_header(header, keystore._secrets)
            _write_atomic(root / "keystore.json", json.dumps(upgraded).encode())
        return replace(plan, written=True)

    @property
    def directory(self) -> Path:
        """The keystore directory."""
        return self._directory

    def scan(self) -> list[tuple[KeyHandle, KeyStamp]]:
        """Every complete key version on disk (the JSON file is the commit point).

        Each with the stamp its JSON file had before it was read: a file replaced after
        that has another stamp, never the stamp of the key read here.
        """
        handles = []
        for label, version in self._entries():
            found = self._load_handle(label, version)
            if found is not None:
                handles.append(found)
        handles.sort(key=lambda entry: (entry[0].label, entry[0].version))
        return handles

    def _entries(self) -> list[tuple[str, int]]:
        """(label, version) of every JSON file under keys/, unchecked."""
        keys_dir = self._directory / "keys"
        if not keys_dir.is_dir():
            return []
        found = []
        try:
            # A stray file or link under keys/ (a note, an editor's backup) is not a key:
            # only directories setpay made, not links to elsewhere, hold key versions.
            with os.scandir(keys_dir) as entries:
                labels = sorted(
                    entry.name
                    for entry in entries
                    if entry.is_dir(follow_symlinks=False) and LABEL_PATTERN.fullmatch(entry.name)
                )
        except OSError as exc:
            raise _unreadable(keys_dir, exc) from exc
        for label in labels:
            try:
                names = os.listdir(keys_dir / label)
            except FileNotFoundError:
                continue  # its last version was deleted since the directory was listed
            except OSError as exc:
                raise _unreadable(keys_dir / label, exc) from exc
            found += [(label, v) for v in map(version_of_file, names) if v is not None]
        return found

    def stamp(self, label: str, version: int) -> KeyStamp | None:
        """The stamp of a version's JSON file; None once the version is deleted."""
        path = self._meta_paths.get((label, version))
        if path is None:
            path = str(self._paths(label, version).meta)  # checks the label
            self._meta_paths[(label, version)] = path
        try:
            found = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PermanentBackendError(
                f"cannot read keystore file {path}: {exc.strerror or type(exc).__name__}"
            ) from exc
        return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)

    def key_file(self, label: str, version: int) -> Path:
        """A version's private key file (``DIR/keys/LABEL/N.key.pem``), for messages."""
        return self._paths(label, version).key

    def load_private(self, key: KeyHandle) -> PrivateKey:
        """Decrypt one version's private key."""
        path = self._paths(key.label, key.version).key
        try:
            pem = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyNotFound(f"key {key.label!r} v{key.version} is gone from keystore") from exc
        try:
            private_key = serialization.load_pem_private_key(pem, self._secrets.pem_password)
        except (ValueError, TypeError, CryptoUnsupportedAlgorithm) as exc:
            raise PermanentBackendError(
                f"cannot decrypt {path}: wrong passphrase for this key or corrupt file"
            ) from exc
        if not isinstance(private_key, PRIVATE_KEY_TYPES):
            raise PermanentBackendError(f"{path} holds a key type setpay does not use")
        return private_key

    def add(
        self, label: str, usage: KeyUsage, kem: KemAlgorithm | None, private_key: PrivateKey
    ) -> tuple[KeyHandle, KeyStamp]:
        """Store ``private_key`` as the next version of ``label``; its handle and stamp."""
        public_key = private_key.public_key()
        algorithm = algorithm_of_public(public_key)
        key_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._secrets.pem_password),
        )
        public_pem = _public_pem(public_key)
        label_dir = self._directory / "keys" / label
        with exclusive_lock(str(self._directory / ".lock"), LOCK_TIMEOUT_SECONDS):
            _ensure_private_dir(self._directory / "keys")
            _ensure_private_dir(label_dir)
            version = 1 + max(self._versions(label), default=0)
            paths = self._paths(label, version)
            # A removal cut short (it unlinks the JSON file first) may have left this
            # number's certificate behind: it certifies the old key, never this one.
            _unlink(paths.cert)
            _write_atomic(paths.key, key_pem)
            _write_atomic(paths.public, public_pem)
            handle = KeyHandle(label, version, usage, algorithm, public_key, kem)
            _write_atomic(paths.meta, metadata_file(self._secrets, handle, public_pem))
            # Under the lock that every removal takes: the stamp is this file's.
            stamp = self.stamp(label, version)
        if stamp is None:
            raise PermanentBackendError(f"{paths.meta} vanished as it was written")
        return handle, stamp

    def remove(self, label: str, version: int | None) -> list[int]:
        """Delete one version or all versions of ``label``; the versions removed."""
        with exclusive_lock(str(self._directory / ".lock"), LOCK_TIMEOUT_SECONDS):
            existing = self._versions(label)
            doomed = existing if version is None else [v for v in existing if v == version]
            if not doomed:
                which = "any version" if version is None else f"v{version}"
                raise KeyNotFound(f"no key {label!r} ({which}) in keystore")
            label_dir = self._directory / "keys" / label
            try:
                for number in doomed:
                    paths = self._paths(label, number)
                    # Metadata first: the version stops existing before its key file goes.
                    for path in (paths.meta, paths.cert, paths.public, paths.key):
                        path.unlink(missing_ok=True)
                fsync_directory(label_dir)
                if not os.listdir(label_dir):
                    os.rmdir(label_dir)
                    fsync_directory(self._directory / "keys")
            except OSError as exc:
                raise PermanentBackendError(
                    f"cannot remove key {label!r} from {label_dir}: "
                    f"{exc.strerror or type(exc).__name__}"
                ) from exc
        return doomed

    def write_certificate(self, key: KeyHandle, der: bytes) -> None:
        """Store (or replace) the certificate beside a key version."""
        paths = self._paths(key.label, key.version)
        # Under the lock every removal and every new version takes: the version checked
        # here is still the one written beside, not one removed (or made again) since.
        with exclusive_lock(str(self._directory / ".lock"), LOCK_TIMEOUT_SECONDS):
            try:
                public_pem = _read_small(paths.public) if paths.meta.exists() else None
            except FileNotFoundError:
                public_pem = None
            except OSError as exc:
                raise PermanentBackendError(f"cannot read keystore file {paths.public}") from exc
            if public_pem is None or public_pem != _public_pem(key.public_key):
                raise KeyNotFound(f"key {key.label!r} v{key.version} is gone from the keystore")
            _write_atomic(paths.cert, der)

    def read_certificate(self, key: KeyHandle) -> bytes | None:
        """The certificate stored beside a key version, if any."""
        path = self._paths(key.label, key.version).cert
        try:
            return _read_small(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PermanentBackendError(
                f"cannot read keystore file {path}: {exc.strerror or type(exc).__name__}"
            ) from exc

    def _versions(self, label: str) -> list[int]:
        check_label(label)  # a label becomes a path: no "..", no "/"
        label_dir = self._directory / "keys" / label
        if not label_dir.is_dir():
            return []
        try:
            names = os.listdir(label_dir)
        except OSError as exc:
            raise _unreadable(label_dir, exc) from exc
        return sorted(v for v in map(version_of_file, names) if v is not None)

    def _paths(self, label: str, version: int) -> _Paths:
        check_label(label)  # a label becomes a path: no "..", no "/"
        base = self._directory / "keys" / label
        return _Paths(
            key=base / f"{version}.key.pem",
            public=base / f"{version}.pub.pem",
            meta=base / f"{version}.json",
            cert=base / f"{version}.cert.der",
        )

    def _load_handle(self, label: str, version: int) -> tuple[KeyHandle, KeyStamp] | None:
        """A version's handle and stamp; None if it was deleted while being read."""
        stamp = self.stamp(label, version)
        if stamp is None:
            return None
        found = self._read_entry(label, version)
        if found is None:
            return None
        entry = (label, version, self._paths(label, version).meta)
        return checked_handle(self._secrets, entry, *found), stamp

    def _read_entry(self, label: str, version: int) -> tuple[dict[str, Any], bytes] | None:
        """A version's parsed JSON file and public key file; None if it was deleted."""
        paths = self._paths(label, version)
        try:
            meta_bytes = _read_small(paths.meta)
            public_pem = _read_small(paths.public)
        except FileNotFoundError:
            # Removal unlinks the JSON file first: gone now means deleted meanwhile.
            if self.stamp(label, version) is None:
                return None
            raise PermanentBackendError(f"corrupt keystore entry {paths.meta}") from None
        except OSError as exc:
            raise PermanentBackendError(f"cannot read keystore file {paths.meta}") from exc
        return _parse_json(paths.meta, meta_bytes), public_pem


def _ensure_private_dir(path: Path) -> None:
    """Create ``path`` 0700, or check an existing one is not open to others."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        mode = path.stat().st_mode
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot create keystore directory {path}: {exc.strerror or type(exc).__name__}"
        ) from exc
    if not stat.S_ISDIR(mode):
        raise PermanentBackendError(f"keystore path {path} is not a directory")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermanentBackendError(
            f"keystore directory {path} is accessible to group or others "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 700 it"
        )


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a 0600 file so readers see the old content or the new, never a torn one."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        fsync_directory(path.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise PermanentBackendError(
            f"cannot write {path}: {exc.strerror or type(exc).__name__}"
        ) from exc


def fsync_directory(path: Path) -> None:
    """Flush directory ``path``, so that a file created, renamed or removed in it stays so
    through a crash: a file's own fsync does not cover its name. (The bank's and the
    clients' files use it too: ``hsm`` is the layer below both.)"""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _public_pem(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _unreadable(path: Path, exc: OSError) -> PermanentBackendError:
    return PermanentBackendError(
        f"cannot read keystore directory {path}: {exc.strerror or type(exc).__name__}"
    )


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot remove {path}: {exc.strerror or type(exc).__name__}"
        ) from exc


def _read_small(path: Path) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise PermanentBackendError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = _read_small(path)
    except OSError as exc:
        raise PermanentBackendError(f"cannot read keystore file {path}") from exc
    return _parse_json(path, data)


def _parse_json(path: Path, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise PermanentBackendError(f"cannot read keystore file {path}") from exc
    if not isinstance(value, dict):
        raise PermanentBackendError(f"keystore file {path} is not a JSON object")
    return value
