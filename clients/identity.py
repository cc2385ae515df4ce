"""A client's own certificates: the pinned brand root, its issuing chain, its certified keys.

Private keys stay in the key backend (``soft:DIR`` keystore or a PKCS#11 token) under
fixed labels, each certificate stored beside its key's version (``certified_versions``);
a key-exchange key is used only if it accepts the key transport its certificate names,
and an older one only while its certificate lasts (``certified_key_exchanges``).
The issuing CA certificates (below the brand root) and the pinned root itself are
ordinary PEM files in the client's directory: they are public, and ``openssl`` can read
them.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from clients.errors import ConfigError
from hsm.base import KeyBackend, KeyHandle
from hsm.errors import KeyBackendError, KeyNotFound
from hsm.keystore import fsync_directory
from hsm.uri import encode_uri_value
from setcore.credentials import RESTORE_REMEDY, check_key_exchange_pair, older_version_remedy
from setcore.errors import ProtocolError
from setcore.pki.certificate import load_certificate

_PEM_MARK = b"-----BEGIN CERTIFICATE-----"
# The random part of a temporary file's name: 64 bits never collide between writers.
TEMP_NAME_BYTES = 8
# The location of a ``soft:`` URI that means "keys in memory, gone on exit" (``hsm.uri``).
_EPHEMERAL = "ephemeral"
# What ``URI`` stands for in a command this module advises.
_URI_NOTE = "URI: the keys setting of the configuration; run it from that file's directory"


def is_ephemeral_uri(uri: str) -> bool:
    """Whether ``uri`` names ``soft:ephemeral``, keys held in memory until the process
    exits: its location decoded is that word exactly, as ``hsm.uri`` reads it, so a
    keystore directory such as ``soft:ephemeral-keys`` is not one."""
    scheme, sep, rest = uri.partition(":")
    return sep == ":" and scheme == "soft" and _decoded(rest.split(";")[0]) == _EPHEMERAL


def resolve_key_uri(uri: str, base_dir: Path) -> str:
    """A key URI with its relative paths made relative to ``base_dir`` (the client's
    directory, not the current one): a ``soft:DIR`` keystore directory, and the PATH of a
    ``pin-source=file:PATH`` in a ``soft:`` or a ``pkcs11:`` URI.

    Anything else is left as written, for ``hsm.uri`` to read or refuse when the keys
    are opened: ``soft:ephemeral``, absolute paths, a location it could not decode.
    """
    scheme, sep, rest = uri.partition(":")
    if sep and scheme == "pkcs11":
        # The attributes sit in the path (``;``) and, RFC 7512's query form, after ``?``.
        path, qsep, query = rest.partition("?")
        items = ";".join(_resolve_pin_file(a, base_dir) for a in path.split(";"))
        if qsep:
            items += qsep + "&".join(_resolve_pin_file(a, base_dir) for a in query.split("&"))
        return f"pkcs11:{items}"
    if not sep or scheme != "soft" or is_ephemeral_uri(uri):
        return uri
    directory, *attributes = rest.split(";")
    decoded = _decoded(directory)
    if not decoded:
        # No directory (``soft:``), or not %-encoded UTF-8: the parser says which. Made
        # relative, the first would name the client's directory itself as the keystore.
        return uri
    if not Path(decoded).is_absolute():
        directory = f"{encode_uri_value(str(base_dir))}/{directory}"
    return ";".join([f"soft:{directory}", *(_resolve_pin_file(a, base_dir) for a in attributes)])


def _decoded(text: str) -> str | None:
    """A URI location %-decoded as ``hsm.uri`` decodes it; None when it cannot be."""
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        return None


def _resolve_pin_file(attribute: str, base_dir: Path) -> str:
    """A ``pin-source=file:PATH`` attribute with a relative PATH made relative to ``base_dir``."""
    name, sep, value = attribute.partition("=")
    if unquote(name).strip().lower() != "pin-source":
        return attribute
    kind, colon, location = unquote(value).partition(":")
    if kind != "file" or not colon or not location or Path(location).is_absolute():
        return attribute
    return f"{name}{sep}file:{encode_uri_value(str(base_dir / location))}"


def read_certificates(path: Path) -> tuple[bytes, ...]:
    """The DER certificates in a PEM file (several) or a DER file (one)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read certificates from {path}: {exc.strerror}") from exc
    try:
        if _PEM_MARK in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigError(f"{path} holds no readable X.509 certificate") from exc
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, so readers never see half.

    ``mode`` None leaves the permissions to the umask, as ``open`` would: for public files
    (certificates), whose readers the operator chooses. A private file names its mode
    (0600), set before any byte is written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{secrets.token_hex(TEMP_NAME_BYTES)}"
    # O_EXCL: never write through a name someone else placed there first.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:
                # Exactly this mode, whatever the umask took away or left.
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_certificates(path: Path, ders: Iterable[bytes]) -> None:
    """Write DER certificates to ``path`` as one PEM file."""
    pem = b"".join(
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM) for der in ders
    )
    # Public: only certificates, which every peer sees anyway; the umask decides who reads.
    write_atomically(path, pem)


def read_root(path: Path) -> bytes:
    """The pinned brand root (exactly one certificate)."""
    certs = read_certificates(path)
    if len(certs) != 1:
        raise ConfigError(f"{path} must hold exactly the brand root certificate")
    return certs[0]


def certified_versions(backend: KeyBackend, label: str) -> Iterator[tuple[KeyHandle, bytes]]:
    """Each version of ``label`` that holds a certificate, with it, newest first.

    A renewal makes a new version before its certificate is stored beside it: the newest
    version is not always certified, and older certified ones still answer for what they
    signed or were named in.
    """
    versions = [key for key in backend.list_keys() if key.label == label]
    for key in sorted(versions, key=lambda k: k.version, reverse=True):
        der = backend.certificate(key)
        if der is not None:
            yield key, der


def certified_key_exchanges(
    backend: KeyBackend, label: str, now: datetime | None = None
) -> list[tuple[KeyHandle, bytes]]:
    """Each version of the key-exchange key ``label`` that holds a certificate, with it,
    newest first (``certified_versions``), less the older ones whose certificate has ended
    by ``now`` (default: the clock's), as a bank leaves out its own: no peer seals to
    those. ``setcore.errors.ConfigurationError`` names the first whose key does not
    accept the key transport its certificate names
    (``setcore.credentials.check_key_exchange_pair``): the older ones open answers too,
    and the refusal of one names the command that deletes it.
    """
    at = now or datetime.now(UTC)
    found = list(certified_versions(backend, label))
    kept = found[:1] + [(key, der) for key, der in found[1:] if not _ended(der, at)]
    for index, (key, der) in enumerate(kept):
        older = older_version_remedy(_delete_command(key), _URI_NOTE)
        check_key_exchange_pair(key, der, RESTORE_REMEDY if index == 0 else older)
    return kept


def _ended(der: bytes, now: datetime) -> bool:
    """Whether certificate ``der`` ended by ``now``; False when it cannot be read, for
    ``check_key_exchange_pair`` to refuse."""
    try:
        return load_certificate(der).not_valid_after_utc <= now
    except ProtocolError:
        return False


def _delete_command(key: KeyHandle) -> str:
    """The command that deletes ``key``'s version, URI standing for the client's key URI
    (never written out here: it may name where a PIN is read from)."""
    return f"setpay keys delete --keys URI --label {key.label} --version {key.version}"


def discard_uncertified(backend: KeyBackend, key: KeyHandle, log: logging.Logger) -> None:
    """Destroy ``key``, a version no certificate names and none ever will.

    Already gone is fine (destroyed by an earlier run); a backend that refuses is only a
    warning on the caller's ``log``, since an uncertified key is never used.
    """
    try:
        backend.delete(key.label, key.version)
    except KeyNotFound:
        pass
    except KeyBackendError as exc:
        log.warning("could not destroy the uncertified %r: %s", key, exc)
