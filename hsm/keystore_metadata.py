"""A software keystore's key version metadata (``N.json``): what the key may do, and its MAC.

The metadata decides what a key may do (its usage, algorithm and key transport), so it
is authenticated: ``N.json`` holds an HMAC-SHA256, under a key derived from the
keystore's passphrase (``hsm.keystore_header``), of its label, version, usage, algorithm
and KEM and of a digest of ``N.pub.pem``. Without the passphrase, no one who can write
the directory can give a key-exchange key a signing usage, hand one version's metadata to
another key, or copy an entry in from another keystore: the version is refused, as
damaged or altered, when it is loaded. ``N.key.pem`` needs no MAC of its own: it is
decrypted under the passphrase and then checked against ``N.pub.pem`` (``hsm.software``).

Format 1 (no MAC) is what keystores held before; it is read only while ``hsm.keystore``
upgrades one (``setpay keys upgrade-keystore``), never afterwards.

Errors raised (``hsm.errors``): ``PermanentBackendError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyHandle, KeyUsage
from hsm.errors import PermanentBackendError
from hsm.keystore_header import KeystoreSecrets
from hsm.policy import PUBLIC_KEY_TYPES, algorithm_of_public

#: Format of each key version's JSON file (the header has its own: ``hsm.keystore_header``).
#: 2 carries a MAC; 1, without one, is read only while a keystore is upgraded.
FORMAT = 2
LEGACY_FORMAT = 1

#: The fields the MAC covers, in the order it covers them: everything a key's use is
#: decided by (``hsm.policy``'s checks read the usage, the algorithm and the KEM).
MAC_FIELDS = ("label", "version", "usage", "algorithm", "kem")

#: A version's JSON file as written: ``f"{version}.json"``.
_VERSION_FILE = re.compile(r"([1-9][0-9]*)\.json")

# Names what the MAC is of, so that an HMAC under the same key for another purpose can
# never pass for one of these.
_MAC_CONTEXT = "setpay key metadata v2"


def version_of_file(name: str) -> int | None:
    """The version a label directory's file ``name`` is the JSON file of, or None.

    Only the names written (``N.json``, N in ASCII digits from 1, no leading zero): not
    ``str.isdigit``, which takes superscripts (``int`` then raises) and other scripts'
    digits (``int`` reads an Arabic-Indic one as 1). Any other name is a stray file, no
    version, as a stray file or link under ``keys/`` is no label: skipped, left as it is.
    """
    found = _VERSION_FILE.fullmatch(name)
    return int(found[1]) if found else None


def metadata_file(unlocked: KeystoreSecrets, handle: KeyHandle, public_pem: bytes) -> bytes:
    """A version's JSON file (format 2): what its key may do, with its MAC."""
    meta: dict[str, Any] = {
        "format": FORMAT,
        "label": handle.label,
        "version": handle.version,
        "usage": handle.usage.value,
        "algorithm": handle.algorithm.value,
        "kem": handle.kem.value if handle.kem is not None else None,
    }
    meta["mac"] = base64.b64encode(metadata_mac(unlocked, meta, public_pem)).decode("ascii")
    return json.dumps(meta, indent=1).encode()


def metadata_mac(unlocked: KeystoreSecrets, meta: Mapping[str, Any], public_pem: bytes) -> bytes:
    """The MAC of a version's metadata and public key file, under the passphrase.

    The values are taken as parsed, in a fixed order (``MAC_FIELDS``), so any edit of one
    (or of ``N.pub.pem``, through its digest) changes it. ``KeyError`` if one is missing.
    """
    fields = [meta[name] for name in MAC_FIELDS]
    digest = hashlib.sha256(public_pem).hexdigest()
    message = json.dumps([_MAC_CONTEXT, *fields, digest], separators=(",", ":"))
    return hmac.new(unlocked.metadata_key, message.encode("utf-8"), hashlib.sha256).digest()


def checked_handle(
    unlocked: KeystoreSecrets,
    entry: tuple[str, int, Path],
    meta: dict[str, Any],
    public_pem: bytes,
    *,
    upgrading: bool = False,
) -> KeyHandle:
    """The handle of version ``entry`` (label, version, JSON path), its MAC checked first.

    Format 1 (no MAC) only while ``upgrading``. A refusal names the version by the place
    of its file, never by what the file says, and carries nothing of the key.
    """
    label, version, path = entry
    if meta.get("format") == FORMAT:
        try:
            expected = metadata_mac(unlocked, meta, public_pem)
            given = base64.b64decode(meta["mac"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise PermanentBackendError(f"corrupt keystore entry {path}") from None
        if not hmac.compare_digest(expected, given):
            raise _altered(entry, "its MAC does not match its metadata and public key")
    elif meta.get("format") != LEGACY_FORMAT:
        raise PermanentBackendError(f"corrupt keystore entry {path}: unknown format")
    elif not upgrading:
        # Every entry of an upgraded keystore has a MAC: one without was put there since.
        raise _altered(entry, "it has no MAC, and every entry of this keystore has one")
    try:
        public_key = serialization.load_pem_public_key(public_pem)
        if not isinstance(public_key, PUBLIC_KEY_TYPES):
            raise TypeError(type(public_key).__name__)
        # As written, never converted: int() of a float rounds, and of Infinity overflows.
        if type(meta["version"]) is not int:
            raise TypeError("version is not an integer")
        handle = KeyHandle(
            label=str(meta["label"]),
            version=meta["version"],
            usage=KeyUsage(meta["usage"]),
            algorithm=KeyAlgorithm(meta["algorithm"]),
            public_key=public_key,
            kem=KemAlgorithm(meta["kem"]) if meta.get("kem") else None,
        )
    except (OSError, KeyError, ValueError, TypeError, CryptoUnsupportedAlgorithm) as exc:
        raise PermanentBackendError(f"corrupt keystore entry {path}{_remedy(entry)}") from exc
    if (handle.label, handle.version) != (label, version) or (
        algorithm_of_public(handle.public_key) is not handle.algorithm
    ):
        raise PermanentBackendError(
            f"corrupt keystore entry {path}: names disagree{_remedy(entry)}"
        )
    return handle


def _altered(entry: tuple[str, int, Path], reason: str) -> PermanentBackendError:
    label, version, path = entry
    return PermanentBackendError(
        f"keystore entry {path}: key {label!r} v{version} is damaged or altered ({reason}): "
        f"it is not used{_remedy(entry)}"
    )


def _remedy(entry: tuple[str, int, Path]) -> str:
    # The keystore is refused whole while it holds the entry (fail-safe), so `setpay keys
    # delete` cannot remove it: the operator's hands or a backup must.
    version = entry[1]
    names = ", ".join(
        f"{version}.{suffix}" for suffix in ("json", "pub.pem", "key.pem", "cert.der")
    )
    return (
        f"; the keystore does not open until that version's files ({names}) are restored "
        "from a backup or removed by hand"
    )
