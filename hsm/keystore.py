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
    DIR/keys/LABEL/N.json              label, version, usage, algorithm, kem; no key bytes
    DIR/keys/LABEL/N.cert.der          the certificate stored beside it, if any

A version exists once its JSON file exists (written last), so a crash mid-write leaves
no half key behind. The JSON file's stamp (``KeyStamp``: device, inode, size,
modification and change times) tells a reader cheaply whether the version it loaded is
still there and still the same: a version deleted and written again is a new file.

PKCS#8 encryption in ``cryptography`` is PBES2 with only 2048 PBKDF2 rounds, too few for
a passphrase; so the passphrase is first stretched with scrypt (salt per keystore) and
the result is the PKCS#8 password. The scrypt runs once per open.

Errors raised (``hsm.errors``): ``PermanentBackendError`` (wrong passphrase, not a
keystore, unsafe permissions, corrupt file), ``TransientBackendError`` (lock held too
long), ``KeyNotFound``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyHandle, KeyUsage, PrivateKey
from hsm.errors import KeyNotFound, PermanentBackendError
from hsm.filelock import exclusive_lock
from hsm.pinsource import has_surrogates
from hsm.policy import (
    LABEL_PATTERN,
    PRIVATE_KEY_TYPES,
    PUBLIC_KEY_TYPES,
    algorithm_of_public,
    check_label,
)

#: Format of each key version's JSON file (the header has its own, ``HEADER_FORMAT``).
FORMAT = 1
# The header (keystore.json) writes its salt and check in base64 since format 2. In hex,
# about one header in 160 (measured over 200,000 random ones) held a Luhn-valid run of
# 13-19 digits, and PAN scanners, the demo's among them, then reported a card number in
# keystore.json. Format 1 headers (hex) are still read.
HEADER_FORMAT = 2
_HEADER_FORMATS: dict[int, Callable[[str], bytes]] = {
    1: binascii.unhexlify,
    2: lambda text: base64.b64decode(text, validate=True),
}

#: scrypt cost: 2^15 x 8 x 128 bytes = 32 MiB and ~70 ms here, the interactive-login
#: figure of RFC 7914's authors; paid once per open, so guessing costs an attacker the same.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
DERIVED_BYTES = 32

#: Most memory a keystore header may make scrypt use (128 x r x n bytes). The header is
#: read from disk, so a tampered one must not make every open allocate more: 1 GiB is 32
#: times our own 32 MiB, room for a stronger setting, and still fits a small host.
MAX_SCRYPT_MEMORY_BYTES = 2**30

#: Key versions are claimed under a lock; a holder that takes longer than this is stuck.
LOCK_TIMEOUT_SECONDS = 10.0

#: Metadata and certificate files are small; refuse anything larger as not ours.
MAX_FILE_BYTES = 64 * 1024

_CHECK_INPUT = b"setpay keystore passphrase check v1"

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

    def __init__(self, directory: Path, pem_password: bytes) -> None:
        self._directory = directory
        self._pem_password = pem_password
        # Each version's JSON path as a string, made once: ``stamp`` runs for every sign
        # and decapsulate, and building the paths each time cost more than the stat
        # (about 12 us against 2 per operation, measured). One entry per key version.
        self._meta_paths: dict[tuple[str, int], str] = {}

    @classmethod
    def open(cls, directory: str | os.PathLike[str], passphrase: str) -> Keystore:
        """Open (creating if absent or empty) a keystore; check the passphrase."""
        root = Path(directory)
        if not passphrase:
            raise PermanentBackendError(f"empty passphrase for keystore {root}")
        _ensure_private_dir(root)
        header_path = root / "keystore.json"
        if not header_path.exists():
            if any(name != ".lock" for name in os.listdir(root)):
                raise PermanentBackendError(
                    f"{root} is not a setpay keystore (no keystore.json, not empty)"
                )
            with exclusive_lock(str(root / ".lock"), LOCK_TIMEOUT_SECONDS):
                if not header_path.exists():
                    header, derived = _new_header(passphrase)
                    _write_atomic(header_path, json.dumps(header).encode())
                    return cls(root, _pem_password(derived))
        header = _read_json(header_path)
        return cls(root, _unlock(root, header, passphrase))

    @property
    def directory(self) -> Path:
        """The keystore directory."""
        return self._directory

    def scan(self) -> list[tuple[KeyHandle, KeyStamp]]:
        """Every complete key version on disk (the JSON file is the commit point).

        Each with the stamp its JSON file had before it was read: a file replaced after
        that has another stamp, never the stamp of the key read here.
        """
        keys_dir = self._directory / "keys"
        if not keys_dir.is_dir():
            return []
        handles = []
        # A stray file or link under keys/ (a note, an editor's backup) is not a key:
        # only directories setpay made, not links to elsewhere, hold key versions.
        labels = sorted(
            entry.name
            for entry in os.scandir(keys_dir)
            if entry.is_dir(follow_symlinks=False) and LABEL_PATTERN.fullmatch(entry.name)
        )
        for label in labels:
            try:
                names = os.listdir(keys_dir / label)
            except FileNotFoundError:
                continue  # its last version was deleted since the directory was listed
            for name in names:
                stem = name.removesuffix(".json")
                if stem != name and stem.isdigit():
                    found = self._load_handle(label, int(stem))
                    if found is not None:
                        handles.append(found)
        handles.sort(key=lambda entry: (entry[0].label, entry[0].version))
        return handles

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

    def load_private(self, key: KeyHandle) -> PrivateKey:
        """Decrypt one version's private key."""
        path = self._paths(key.label, key.version).key
        try:
            pem = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyNotFound(f"key {key.label!r} v{key.version} is gone from keystore") from exc
        try:
            private_key = serialization.load_pem_private_key(pem, self._pem_password)
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
            serialization.BestAvailableEncryption(self._pem_password),
        )
        public_pem = public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        label_dir = self._directory / "keys" / label
        with exclusive_lock(str(self._directory / ".lock"), LOCK_TIMEOUT_SECONDS):
            _ensure_private_dir(self._directory / "keys")
            _ensure_private_dir(label_dir)
            version = 1 + max(self._versions(label), default=0)
            paths = self._paths(label, version)
            _write_atomic(paths.key, key_pem)
            _write_atomic(paths.public, public_pem)
            meta = {
                "format": FORMAT,
                "label": label,
                "version": version,
                "usage": usage.value,
                "algorithm": algorithm.value,
                "kem": kem.value if kem is not None else None,
            }
            _write_atomic(paths.meta, json.dumps(meta, indent=1).encode())
            # Under the lock that every removal takes: the stamp is this file's.
            stamp = self.stamp(label, version)
        if stamp is None:
            raise PermanentBackendError(f"{paths.meta} vanished as it was written")
        return KeyHandle(label, version, usage, algorithm, public_key, kem), stamp

    def remove(self, label: str, version: int | None) -> list[int]:
        """Delete one version or all versions of ``label``; the versions removed."""
        with exclusive_lock(str(self._directory / ".lock"), LOCK_TIMEOUT_SECONDS):
            existing = self._versions(label)
            doomed = existing if version is None else [v for v in existing if v == version]
            if not doomed:
                which = "any version" if version is None else f"v{version}"
                raise KeyNotFound(f"no key {label!r} ({which}) in keystore")
            for number in doomed:
                paths = self._paths(label, number)
                # Metadata first: the version stops existing before its key file goes.
                for path in (paths.meta, paths.cert, paths.public, paths.key):
                    path.unlink(missing_ok=True)
            fsync_directory(self._directory / "keys" / label)
            if not os.listdir(self._directory / "keys" / label):
                os.rmdir(self._directory / "keys" / label)
                fsync_directory(self._directory / "keys")
        return doomed

    def write_certificate(self, key: KeyHandle, der: bytes) -> None:
        """Store (or replace) the certificate beside a key version."""
        paths = self._paths(key.label, key.version)
        if not paths.meta.exists():
            raise KeyNotFound(f"key {key.label!r} v{key.version} is gone from the keystore")
        _write_atomic(paths.cert, der)

    def read_certificate(self, key: KeyHandle) -> bytes | None:
        """The certificate stored beside a key version, if any."""
        try:
            return _read_small(self._paths(key.label, key.version).cert)
        except FileNotFoundError:
            return None

    def _versions(self, label: str) -> list[int]:
        check_label(label)  # a label becomes a path: no "..", no "/"
        label_dir = self._directory / "keys" / label
        if not label_dir.is_dir():
            return []
        stems = (name.removesuffix(".json") for name in os.listdir(label_dir))
        return sorted(int(stem) for stem in stems if stem.isdigit())

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
        paths = self._paths(label, version)
        stamp = self.stamp(label, version)
        if stamp is None:
            return None
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
        meta = _parse_json(paths.meta, meta_bytes)
        try:
            public_key = serialization.load_pem_public_key(public_pem)
            if not isinstance(public_key, PUBLIC_KEY_TYPES):
                raise TypeError(type(public_key).__name__)
            handle = KeyHandle(
                label=str(meta["label"]),
                version=int(meta["version"]),
                usage=KeyUsage(meta["usage"]),
                algorithm=KeyAlgorithm(meta["algorithm"]),
                public_key=public_key,
                kem=KemAlgorithm(meta["kem"]) if meta.get("kem") else None,
            )
        except (OSError, KeyError, ValueError, TypeError, CryptoUnsupportedAlgorithm) as exc:
            raise PermanentBackendError(f"corrupt keystore entry {paths.meta}") from exc
        if (handle.label, handle.version) != (label, version) or (
            algorithm_of_public(handle.public_key) is not handle.algorithm
        ):
            raise PermanentBackendError(f"corrupt keystore entry {paths.meta}: names disagree")
        return handle, stamp


def _new_header(passphrase: str) -> tuple[dict[str, Any], bytes]:
    """A new keystore header and the key derived from the passphrase with it."""
    salt = secrets.token_bytes(SALT_BYTES)
    derived = _stretch(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    check = hmac.new(derived, _CHECK_INPUT, hashlib.sha256).digest()
    header = {
        "format": HEADER_FORMAT,
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "check": _b64(check),
    }
    return header, derived


def _unlock(root: Path, header: dict[str, Any], passphrase: str) -> bytes:
    """The PKCS#8 password for this keystore, or ``PermanentBackendError``."""
    try:
        decode = _HEADER_FORMATS.get(header["format"])
        if decode is None or header["kdf"]["name"] != "scrypt":
            raise PermanentBackendError(f"keystore {root} has an unknown format")
        kdf = header["kdf"]
        derived = _stretch(
            passphrase, decode(kdf["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        )
        expected = decode(header["check"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise PermanentBackendError(f"corrupt keystore header {root / 'keystore.json'}") from exc
    actual = hmac.new(derived, _CHECK_INPUT, hashlib.sha256).digest()
    if not hmac.compare_digest(actual, expected):
        raise PermanentBackendError(f"wrong passphrase for keystore {root}")
    return _pem_password(derived)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pem_password(derived: bytes) -> bytes:
    # Hex keeps the PKCS#8 password printable for any tool that insists on text.
    return derived.hex().encode("ascii")


def _stretch(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # The header is read from disk: bound its cost (see MAX_SCRYPT_MEMORY_BYTES).
    if not (
        2 <= n <= 2**20 and 1 <= r <= 16 and 1 <= p <= 4 and 128 * r * n <= MAX_SCRYPT_MEMORY_BYTES
    ):
        raise PermanentBackendError("keystore scrypt parameters out of range")
    if has_surrogates(passphrase):
        # Checked, not caught: a UnicodeEncodeError's args hold the whole passphrase.
        raise PermanentBackendError("keystore passphrase is not UTF-8 text")
    return Scrypt(salt=salt, length=DERIVED_BYTES, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


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
