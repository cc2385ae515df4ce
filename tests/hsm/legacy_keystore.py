"""Software keystores as the code before authenticated metadata wrote them.

Written here from the old format's description, not with ``hsm``'s own functions: a test
that reads an old keystore must not pass because the writer and the reader share a bug.
Before, the header (format 1 in hex, 2 in base64) checked the passphrase with an HMAC of
``CHECK_V1``, and each ``N.json`` was format 1: the fields alone, no MAC. Such a keystore
is refused at open until ``setpay keys upgrade-keystore`` (``Keystore.upgrade``) has run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

CHECK_V1 = b"setpay keystore passphrase check v1"

#: The fields a format-1 ``N.json`` held, in the order the old code wrote them.
LEGACY_FIELDS = ("format", "label", "version", "usage", "algorithm", "kem")


def derived_key(directory: Path, passphrase: str) -> bytes:
    """The scrypt output of ``passphrase`` under the keystore's salt and cost."""
    kdf = json.loads((directory / "keystore.json").read_text())["kdf"]
    salt = _decode(kdf["salt"])
    scrypt = Scrypt(salt=salt, length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"])
    return scrypt.derive(passphrase.encode("utf-8"))


def make_legacy(directory: Path, passphrase: str, header_format: int = 2) -> None:
    """Rewrite the keystore in ``directory`` exactly as the pre-MAC code left it."""
    derived = derived_key(directory, passphrase)
    header_path = directory / "keystore.json"
    header = json.loads(header_path.read_text())
    encode = bytes.hex if header_format == 1 else _b64
    check = hmac.new(derived, CHECK_V1, hashlib.sha256).digest()
    header["format"] = header_format
    header["kdf"]["salt"] = encode(_decode(header["kdf"]["salt"]))
    header["check"] = encode(check)
    header_path.write_text(json.dumps(header))
    for path in sorted((directory / "keys").glob("*/*.json")):
        path.write_text(legacy_meta(json.loads(path.read_text())))


def legacy_meta(meta: dict[str, object]) -> str:
    """A version's JSON file as format 1: no MAC."""
    old = {name: meta[name] for name in LEGACY_FIELDS}
    old["format"] = 1
    return json.dumps(old, indent=1)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode(text: str) -> bytes:
    # Base64 of 16 bytes ends in "=="; hex never holds "=".
    return base64.b64decode(text, validate=True) if text.endswith("=") else bytes.fromhex(text)
