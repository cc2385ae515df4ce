"""The software keystore's header (keystore.json): passphrase stretching and check, and
the keys the passphrase unlocks.

The header holds the format, the scrypt salt and parameters, and an HMAC of a fixed
string under the derived key, so a wrong passphrase is told at once, not at the first
key decryption. The derived key, in hex, is every key file's PKCS#8 password; an HMAC key
derived from it authenticates each key version's metadata (``hsm.keystore_metadata``).

Errors raised (``hsm.errors``): ``PermanentBackendError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hsm.errors import PermanentBackendError
from hsm.keystore_upgrade import TEMP_NAME
from hsm.pinsource import has_surrogates

# The header (keystore.json) writes its salt and check in base64 since format 2. In hex,
# about one header in 160 (measured over 200,000 random ones) held a Luhn-valid run of
# 13-19 digits, and PAN scanners, the demo's among them, then reported a card number in
# keystore.json. Format 1 headers (hex) are still read, by ``Keystore.upgrade`` only.
# Format 3 (base64 too) says that every key version's metadata carries its MAC and that
# metadata without one is refused; ``hsm.keystore`` refuses older keystores at open,
# and upgrades them only when told to (``setpay keys upgrade-keystore``).
HEADER_FORMAT = 3
_HEADER_FORMATS: dict[int, Callable[[str], bytes]] = {
    1: binascii.unhexlify,
    2: lambda text: base64.b64decode(text, validate=True),
    3: lambda text: base64.b64decode(text, validate=True),
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

# What the check is an HMAC of. Format 3 checks another string than 1 and 2: a format-3
# header edited back to format 2 (to have unauthenticated metadata believed again) then
# fails the passphrase check; only a copy of the header from before the upgrade passes.
_CHECK_INPUTS = {
    1: b"setpay keystore passphrase check v1",
    2: b"setpay keystore passphrase check v1",
    3: b"setpay keystore passphrase check v3: key metadata authenticated",
}

#: The header format from which every key version's metadata must carry its MAC.
METADATA_AUTHENTICATED_FORMAT = 3
#: The header formats of keystores written before: refused at open until upgraded by
#: the operator (``Keystore.upgrade``), never upgraded by an open.
# A tuple, not a set: membership compares, so a header whose format is a list or an
# object is refused as corrupt by ``unlock`` rather than failing to hash.
LEGACY_HEADER_FORMATS = (1, 2)

# Domain separation: the metadata MAC key and the passphrase check are both HMACs under
# the derived key, of different fixed strings, so neither can stand for the other.
_METADATA_KEY_INPUT = b"setpay keystore key metadata MAC key v1"


@dataclass(frozen=True, repr=False, eq=False)
class KeystoreSecrets:
    """The keys a keystore's passphrase unlocks (no repr: never printed or logged)."""

    #: Every key file's PKCS#8 password: the derived key in hex, printable for any tool
    #: that insists on text.
    pem_password: bytes
    #: The HMAC key of every key version's metadata (``hsm.keystore_metadata``).
    metadata_key: bytes
    #: The format-3 passphrase check, written into the header when it is upgraded.
    check: bytes


def new_header(passphrase: str) -> tuple[dict[str, Any], KeystoreSecrets]:
    """A new keystore header and the keys the passphrase unlocks with it."""
    salt = secrets.token_bytes(SALT_BYTES)
    unlocked = _secrets(_stretch(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    header = {
        "format": HEADER_FORMAT,
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "check": _b64(unlocked.check),
    }
    return header, unlocked


def header_temp_files(root: Path) -> list[Path]:
    """The header's temp files in ``root``, which has no header; refuse it if it holds more.

    An opener that got there first may be writing the header (``hsm.keystore`` writes a
    ``.keystore.json.*.tmp``, then renames it) under the lock, whose file is the only
    other name a keystore being made holds: anything else is another program's.
    """
    try:
        names = os.listdir(root)
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot read keystore directory {root}: {exc.strerror or type(exc).__name__}"
        ) from exc
    temps = [n for n in names if n.startswith(".keystore.json.") and TEMP_NAME.fullmatch(n)]
    if "keystore.json" in names:
        return []  # renamed into place since the caller looked (keys/ may follow): ours
    if set(names) - {".lock", *temps}:
        raise PermanentBackendError(
            f"{root} is not a setpay keystore (no keystore.json, not empty)"
        )
    return [root / name for name in temps]


def unlock(root: Path, header: dict[str, Any], passphrase: str) -> KeystoreSecrets:
    """The keys this keystore's passphrase unlocks, or ``PermanentBackendError``."""
    try:
        header_format = header["format"]
        decode = _HEADER_FORMATS.get(header_format)
        if decode is None or header["kdf"]["name"] != "scrypt":
            raise PermanentBackendError(f"keystore {root} has an unknown format")
        kdf = header["kdf"]
        derived = _stretch(
            passphrase, decode(kdf["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        )
        expected = decode(header["check"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise PermanentBackendError(f"corrupt keystore header {root / 'keystore.json'}") from exc
    actual = hmac.new(derived, _CHECK_INPUTS[header_format], hashlib.sha256).digest()
    if not hmac.compare_digest(actual, expected):
        raise PermanentBackendError(f"wrong passphrase for keystore {root}")
    return _secrets(derived)


def metadata_authenticated(header: dict[str, Any]) -> bool:
    """Whether this header says every key version's metadata carries its MAC."""
    return header.get("format") == METADATA_AUTHENTICATED_FORMAT


def authenticated_header(header: dict[str, Any], unlocked: KeystoreSecrets) -> dict[str, Any]:
    """``header`` (already unlocked) in format 3: the same salt and cost, the format-3 check.

    Only the format and the check change: the derived key, and so every key file's
    password, stays the same.
    """
    kdf = dict(header["kdf"])
    kdf["salt"] = _b64(_HEADER_FORMATS[header["format"]](kdf["salt"]))
    return {"format": METADATA_AUTHENTICATED_FORMAT, "kdf": kdf, "check": _b64(unlocked.check)}


def _secrets(derived: bytes) -> KeystoreSecrets:
    return KeystoreSecrets(
        pem_password=derived.hex().encode("ascii"),
        metadata_key=hmac.new(derived, _METADATA_KEY_INPUT, hashlib.sha256).digest(),
        check=hmac.new(derived, _CHECK_INPUTS[HEADER_FORMAT], hashlib.sha256).digest(),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
