"""The software keystore's header (keystore.json): passphrase stretching and check.

The header holds the format, the scrypt salt and parameters, and an HMAC of a fixed
string under the derived key, so a wrong passphrase is told at once, not at the first
key decryption. The derived key, in hex, is every key file's PKCS#8 password.

Errors raised (``hsm.errors``): ``PermanentBackendError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hsm.errors import PermanentBackendError
from hsm.pinsource import has_surrogates

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

_CHECK_INPUT = b"setpay keystore passphrase check v1"


def new_header(passphrase: str) -> tuple[dict[str, Any], bytes]:
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


def unlock(root: Path, header: dict[str, Any], passphrase: str) -> bytes:
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
    return pem_password(derived)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pem_password(derived: bytes) -> bytes:
    """The PKCS#8 password of every key file: the derived key in hex."""
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
