"""The wallet's card data at rest: sealed under a passphrase, readable by its owner only.

    key        = scrypt(passphrase, salt; N = 2^15, r = 8, p = 1) -> 32 bytes
    ciphertext = AES-256-GCM(key, nonce, card JSON, AD = "setpay wallet card v1" + salt)

The file (JSON: format, KDF parameters, salt, nonce, ciphertext, all but the ciphertext
in clear) is written atomically with mode 0600, and refused when group or others can
read it. It holds the PAN, the card expiry, the card's enrolment code if it has one,
CardSecret and, once registration is done, PANSecret; while a certificate request is
unanswered or pended, the registration state it needs to resume. Opening with a wrong
passphrase, or a file that was altered, fails the GCM tag: ``VaultError`` says so
without saying more.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from clients.errors import VaultError
from clients.identity import write_atomically
from hsm.errors import PermanentBackendError
from hsm.pinsource import PinSource
from setcore.errors import ProtocolError
from setcore.pan import PAN, InvalidPAN, check_expiry
from setcore.purchase import CardData

FORMAT = 1
# scrypt cost: 2^15 x 8 x 128 bytes = 32 MiB of memory and some 70 ms here, paid once per
# wallet command; every passphrase guess costs an attacker with the file the same.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
# The file names its own parameters, so anyone who can write it chooses what opening it
# costs: scrypt allocates 128 x N x r bytes and mixes that p times. Bounded at 8 times our
# memory (256 MiB) and 32 times our work (some 2 s here), r and p each at 8 and 16 times
# ours, so that a rewritten file makes the wallet refuse it, never exhaust the machine
# or hang. N needs no bound of its own: with r at least ours, the memory bound caps it.
MAX_SCRYPT_R = 64
MAX_SCRYPT_P = 16
MAX_SCRYPT_MEMORY_BYTES = 256 * 1024 * 1024
MAX_SCRYPT_WORK_BYTES = 1024 * 1024 * 1024
SALT_BYTES = 16
KEY_BYTES = 32
# GCM's standard 96-bit nonce; fresh for every write under a key used for few writes.
NONCE_BYTES = 12
# A card file is a few hundred bytes; anything larger is not ours.
MAX_FILE_BYTES = 64 * 1024
PASSPHRASE_ENV = "SETPAY_WALLET_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
_AD = b"setpay wallet card v1"


@dataclass(frozen=True)
class CardSecrets:
    """What the vault holds: the card, its secrets, and a pended registration if any."""

    pan: PAN
    expiry: str
    card_secret: bytes = field(repr=False)
    pan_secret: bytes | None = field(default=None, repr=False)
    #: An unanswered or pended certificate request's state (JSON-able; no PAN in clear):
    #: enough to send the request again or to ask about it with CertInq.
    pending: dict[str, str] | None = field(default=None, repr=False)
    #: The card's enrolment code from the issuer's card file, if it had one: the
    #: Cardholder CA asks for it at every registration and renewal of the card.
    enrolment_code: str | None = field(default=None, repr=False)

    def card(self) -> CardData:
        """The card as the purchase protocol needs it (registered cards only)."""
        if self.pan_secret is None:
            raise VaultError("the card is not registered yet: run setpay wallet register")
        return CardData(self.pan, self.expiry, self.card_secret, self.pan_secret)

    def __repr__(self) -> str:
        state = "registered" if self.pan_secret else "unregistered"
        return f"CardSecrets({self.pan.masked}, expiry={self.expiry}, {state})"


def passphrase_source(passphrase_file: Path | None) -> PinSource:
    """Where the passphrase comes from: the file if configured, else $SETPAY_WALLET_PASSPHRASE."""
    if passphrase_file is not None:
        return PinSource("file", str(passphrase_file))
    return PinSource("env", PASSPHRASE_ENV)


def read_passphrase(source: PinSource) -> str:
    """Read the passphrase now (``VaultError`` if missing or in an unsafe file)."""
    try:
        return source.read()
    except PermanentBackendError as exc:
        raise VaultError(f"wallet passphrase: {exc}") from exc


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def seal(path: Path, secrets: CardSecrets, passphrase: str) -> None:
    """Write the card data sealed under ``passphrase`` (a fresh salt and nonce every time)."""
    plain = {
        "pan": secrets.pan.reveal(),
        "expiry": secrets.expiry,
        "card_secret": _b64(secrets.card_secret),
        "pan_secret": _b64(secrets.pan_secret) if secrets.pan_secret else "",
        "pending": secrets.pending or {},
        "enrolment_code": secrets.enrolment_code or "",
    }
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    key = _key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(key).encrypt(nonce, json.dumps(plain).encode(), _AD + salt)
    sealed = {
        "format": FORMAT,
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "aead": "aes-256-gcm",
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
    }
    write_atomically(path, json.dumps(sealed, indent=1).encode(), mode=0o600)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise VaultError(f"no card file at {path}: register the card first") from None
    except OSError as exc:
        raise VaultError(f"cannot read {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise VaultError(f"{path} is accessible to group or others: chmod 600 it")
    if len(data) > MAX_FILE_BYTES:
        raise VaultError(f"{path} is too large to be a card file")
    try:
        sealed = json.loads(data)
    except (ValueError, RecursionError):
        # RecursionError: nested past the parser's depth, which 64 KiB allows.
        raise VaultError(f"{path} is not a sealed card file") from None
    if not isinstance(sealed, dict) or sealed.get("format") != FORMAT:
        raise VaultError(f"{path} is not a sealed card file of format {FORMAT}")
    return sealed


def _whole(value: object) -> int:
    """A KDF parameter as ``seal`` writes it, a JSON integer; ``ValueError`` for any other
    value (``int()`` would take "32768" or 32768.5, and fail with OverflowError on 1e400,
    which JSON reads as infinity)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("a KDF parameter is not an integer")
    return value


def _scrypt_memory(n: int, r: int) -> int:
    return 128 * n * r


def _check_scrypt(path: Path, n: int, r: int, p: int) -> None:
    """Refuse parameters weaker than ours (an attacker who rewrites the file must not make
    our next write cheap to guess) or costlier than the named bounds (nor make opening it
    exhaust the machine)."""
    if n < SCRYPT_N or r < SCRYPT_R or p < SCRYPT_P:
        raise VaultError(f"{path}: scrypt parameters weaker than the wallet's")
    if (
        r > MAX_SCRYPT_R
        or p > MAX_SCRYPT_P
        or _scrypt_memory(n, r) > MAX_SCRYPT_MEMORY_BYTES
        or _scrypt_memory(n, r) * p > MAX_SCRYPT_WORK_BYTES
    ):
        raise VaultError(
            f"{path}: scrypt parameters out of range (at most r {MAX_SCRYPT_R}, p "
            f"{MAX_SCRYPT_P}, {MAX_SCRYPT_MEMORY_BYTES} bytes of memory, "
            f"{MAX_SCRYPT_WORK_BYTES} bytes of work): the file was altered"
        )


def open_vault(path: Path, passphrase: str) -> CardSecrets:
    """Open the sealed card file; ``VaultError`` for a wrong passphrase or altered file."""
    sealed = _read(path)
    try:
        kdf = sealed["kdf"]
        if kdf["name"] != "scrypt" or sealed["aead"] != "aes-256-gcm":
            raise VaultError(f"{path}: unknown KDF or cipher")
        n, r, p = (_whole(kdf[name]) for name in ("n", "r", "p"))
        _check_scrypt(path, n, r, p)
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(sealed["nonce"], validate=True)
        ciphertext = base64.b64decode(sealed["ciphertext"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise VaultError(f"{path} is malformed") from exc
    try:
        plain = AESGCM(_key(passphrase, salt, n, r, p)).decrypt(nonce, ciphertext, _AD + salt)
    except (InvalidTag, ValueError):
        raise VaultError("wrong wallet passphrase, or the card file was altered") from None
    except MemoryError:
        raise VaultError(
            f"{path}: not enough memory for its scrypt parameters ({_scrypt_memory(n, r)} "
            "bytes): free some, or the file was altered"
        ) from None
    try:
        card = json.loads(plain)
        if not isinstance(card, dict):  # a list's .get was a traceback, not a refusal
            raise TypeError("not an object")
        pending = card.get("pending") or None
        return CardSecrets(
            pan=PAN(card["pan"]),
            expiry=check_expiry(card["expiry"]),
            card_secret=base64.b64decode(card["card_secret"]),
            pan_secret=base64.b64decode(card["pan_secret"]) if card["pan_secret"] else None,
            pending=dict(pending) if pending else None,
            enrolment_code=str(card.get("enrolment_code") or "") or None,
        )
    except (KeyError, TypeError, ValueError, InvalidPAN, ProtocolError) as exc:
        # Never chain the parse error: its message could quote the card data.
        raise VaultError(f"{path} holds no valid card data ({type(exc).__name__})") from None
