"""The ledger keys file (``ledger.keys``): the ledger's two keys sealed under the bank's key
backend, so that the file (and every backup of it) opens no PAN without the backend.

The data key opens every stored PAN and the index key names every card
(``gateway.ledger.pan``); both live only in process memory. The file holds them wrapped
the way the gateway's token master key is made (``setcore.token_seal``), under the same
key, the bank's ``gateway-token`` key, with a KEM ciphertext and an HKDF label of their own::

    format      "setpay-ledger-keys/2"
    key         {"label", "version", "thumbprint"}: the backend key sealed to (thumbprint:
                SHA-256 of its SubjectPublicKeyInfo, to name a mismatch)
    seed        a KEM ciphertext to that key (``TokenKey.create``; its own, not the token seed)
    nonce       12 random bytes
    ciphertext  AES-256-GCM(wrap key, nonce, data key || index key,
                            AD = format || 0x00 || key id)
    key id      = DD(token key SPKI || seed) (``TokenKey.key_id``)
    wrap key    = HKDF-SHA-256(TokenKey master of (key, seed),
                               info = KDF label || format || 0x00 "wrap" 0x00 || key id)

Why the gateway-token key and not a key of its own: every bank already has it (a sealed
file needs no new key on a token, and sealing an older bank's file writes nothing to its
token); every process that opens the ledger is a bank process that holds it already; and a
separate key in the same backend, opened by the same processes, would separate nothing.
The separate seed and label keep the wrap key independent of the token master key.

The format before (1: the two keys in hex, plaintext) is refused with the command that
seals it (``seal_ledger_keys``: ``setpay bank seal-ledger-keys``), never sealed at a
start: the workers of a bank start together and would race to rewrite it, a start must not
write to a directory an operator may have mounted read-only, and the operator sealing it
must know that every earlier backup of the file still holds the keys in plaintext.

A file that opens is not yet the ledger's: anyone who can write it can seal keys of
their choosing (sealing needs only the token key's public half), and an old backup's or
another bank's opens as well. So the keys are held against the ledger's own key check
(``gateway.ledger.key_check``) at every open (``check_belongs``), and by
``seal_ledger_keys`` before it seals: keys that are not the ledger's are refused
(``NotThisLedgersKeys``) before a PAN is sealed or looked up under them.

Errors: ``BankIncomplete`` (``gateway.bank_errors``) for a file that is missing, damaged
or not ours, with ``PlaintextLedgerKeys``, ``LedgerKeysMismatch`` and
``NotThisLedgersKeys`` below it; no message holds any of the file's bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.bank_errors import BankIncomplete
from gateway.bank_files import write_private
from gateway.bank_pki import GATEWAY_TOKEN_LABEL
from gateway.config import BankConfig, config_option
from gateway.ledger import InvalidRequest, LedgerKeys, LedgerStore
from gateway.ledger.key_check import ForeignLedgerKeys, KeyCheck, check_ledger_keys
from gateway.ledger.ledger import wall_clock_ms
from gateway.token_key import sole_version
from hsm.base import KeyBackend, KeyHandle
from hsm.errors import KeyNotFound
from setcore.encoding import KDF_LABEL
from setcore.envelope import KEY_BYTES, NONCE_BYTES
from setcore.errors import ConfigurationError
from setcore.registration import key_thumbprint, spki_of
from setcore.token_seal import TokenKey

FORMAT = "setpay-ledger-keys/2"
# The key a file is sealed to (an existing file names its own label and version).
SEALING_LABEL = GATEWAY_TOKEN_LABEL
_WRAP_INFO = KDF_LABEL + FORMAT.encode() + b"\x00wrap\x00"
# A sealed file is a few hundred bytes (an RSA-3072 KEM ciphertext the largest part); one
# larger than this is not a ledger keys file, and is not read whole into memory.
MAX_FILE_BYTES = 16 * 1024


class PlaintextLedgerKeys(BankIncomplete):
    """The file holds the ledger keys in plaintext (format 1): seal it before the start."""


class LedgerKeysMismatch(BankIncomplete):
    """The file is sealed to a key this bank's backend does not hold (another bank's file,
    or another bank's backend)."""


class NotThisLedgersKeys(BankIncomplete):
    """The file opens, to keys this ledger is not kept under (a forged file, an old
    backup's, another bank's): nothing is sealed or looked up under them."""


def check_belongs(config: BankConfig, store: LedgerStore, keys: LedgerKeys) -> KeyCheck:
    """How ``keys`` were found to be the ones the ledger in ``store`` is kept under
    (``gateway.ledger.key_check``, which writes the ledger's key check if it has none);
    NotThisLedgersKeys if they are not."""
    try:
        return check_ledger_keys(store, keys, wall_clock_ms())
    except ForeignLedgerKeys as exc:
        path = config.path(config.ledger_keys)
        raise NotThisLedgersKeys(
            f"ledger.keys does not belong to this ledger: {path} opens, but {exc}"
            " (an older backup's file, another bank's, or one not written by this bank?);"
            " nothing was opened under it: put back the file this ledger was kept under"
        ) from None


def seal_command(config: BankConfig) -> str:
    """The command that seals a plaintext ledger.keys, as an operator types it."""
    return f"setpay bank {config_option(config)} seal-ledger-keys"


def _wrap_aead(token: TokenKey) -> AESGCM:
    wrap = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_WRAP_INFO + token.key_id
    ).derive(token.master)
    return AESGCM(wrap)


def _ad(token: TokenKey) -> bytes:
    return FORMAT.encode() + b"\x00" + token.key_id


def sealed_bytes(backend: KeyBackend, key: KeyHandle, keys: LedgerKeys) -> bytes:
    """The content of a ledger.keys holding ``keys`` sealed to ``key`` (in ``backend``)."""
    token = TokenKey.create(backend, key)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = _wrap_aead(token).encrypt(nonce, keys.data_key + keys.index_key, _ad(token))
    document = {
        "format": FORMAT,
        "key": {
            "label": key.label,
            "version": key.version,
            "thumbprint": key_thumbprint(spki_of(key.public_key)).hex(),
        },
        "seed": token.seed.hex(),
        "nonce": nonce.hex(),
        "ciphertext": ciphertext.hex(),
    }
    return json.dumps(document, indent=1).encode() + b"\n"


def write_ledger_keys(path: Path, backend: KeyBackend, key: KeyHandle) -> None:
    """Create two new 32-byte ledger keys, sealed to ``key``, in a new file (0600)."""
    keys = LedgerKeys(data_key=os.urandom(KEY_BYTES), index_key=os.urandom(KEY_BYTES))
    data = sealed_bytes(backend, key, keys)
    write_private(path, data)


def _load(path: Path) -> dict[str, Any]:
    """The file's JSON object; refused (BankIncomplete) if missing, unreadable, readable
    by others, or not JSON."""
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_mode & 0o077:
                raise BankIncomplete(f"{path} must be readable by its owner only (chmod 600)")
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise BankIncomplete(
            f"{path} is missing: the ledger keys `setpay init` wrote are needed to open the"
            " ledger (put back the file this ledger was kept under)"
        ) from None
    except OSError as exc:
        raise BankIncomplete(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from exc
    try:
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError("too large")
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise TypeError("not a JSON object")
    except (ValueError, TypeError) as exc:
        # Not chained: a parser's message may quote what it read.
        raise BankIncomplete(f"{path} is not a ledger keys file ({type(exc).__name__})") from None
    return document


def _plaintext_keys(path: Path, document: dict[str, Any]) -> LedgerKeys:
    """The keys of a format 1 file."""
    try:
        return LedgerKeys(
            data_key=bytes.fromhex(document["data_key"]),
            index_key=bytes.fromhex(document["index_key"]),
        )
    except (ValueError, KeyError, TypeError, InvalidRequest) as exc:
        raise BankIncomplete(f"{path} is not a ledger keys file ({type(exc).__name__})") from None


def is_plaintext(document: dict[str, Any]) -> bool:
    """Whether a ledger keys document is format 1 (the keys in hex)."""
    return "format" not in document and "data_key" in document


@dataclass(frozen=True)
class _Sealed:
    label: str
    version: int
    thumbprint: bytes
    seed: bytes
    nonce: bytes
    ciphertext: bytes


def _sealed(path: Path, document: dict[str, Any]) -> _Sealed:
    if document.get("format") != FORMAT:
        raise BankIncomplete(f"{path} is not a ledger keys file of a known format")
    try:
        key = document["key"]
        version = key["version"]
        if not isinstance(key["label"], str) or type(version) is not int:
            raise TypeError("label or version")
        return _Sealed(
            key["label"], version, bytes.fromhex(key["thumbprint"]),
            bytes.fromhex(document["seed"]), bytes.fromhex(document["nonce"]),
            bytes.fromhex(document["ciphertext"]),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise BankIncomplete(f"{path} is not a ledger keys file ({type(exc).__name__})") from None


def sealed_to(config: BankConfig) -> tuple[str, int, bytes] | None:
    """The key (label, version, public key thumbprint) the bank's ledger.keys names as
    the one it is sealed to; None when it is plaintext, missing or unreadable (the
    bank's start says why)."""
    path = config.path(config.ledger_keys)
    try:
        document = _load(path)
        if is_plaintext(document):
            return None
        sealed = _sealed(path, document)
    except BankIncomplete:
        return None
    return sealed.label, sealed.version, sealed.thumbprint


def _unseal(path: Path, sealed: _Sealed, backend: KeyBackend) -> LedgerKeys:
    named = f"key {sealed.label!r} v{sealed.version}"
    try:
        key = backend.get(sealed.label, sealed.version)
    except KeyNotFound:
        raise LedgerKeysMismatch(
            f"{path} is sealed to {named}, which this bank's key backend does not hold"
            " (the ledger.keys of another bank, or another bank's key backend?)"
        ) from None
    held = key_thumbprint(spki_of(key.public_key))
    if held != sealed.thumbprint:
        raise LedgerKeysMismatch(
            f"{path} is sealed to another {named} (SHA-256 {sealed.thumbprint.hex()[:16]}...)"
            f" than this bank's key backend holds ({held.hex()[:16]}...): the ledger.keys of"
            " another bank, or another bank's key backend?"
        )
    try:
        token = TokenKey.from_handle(backend, key, sealed.seed)
        plain = _wrap_aead(token).decrypt(sealed.nonce, sealed.ciphertext, _ad(token))
    except (ConfigurationError, InvalidTag, ValueError):
        raise BankIncomplete(f"{path} does not open with {named} (damaged?)") from None
    if len(plain) != 2 * KEY_BYTES:
        raise BankIncomplete(f"{path} does not hold two {KEY_BYTES}-byte ledger keys")
    return LedgerKeys(data_key=plain[:KEY_BYTES], index_key=plain[KEY_BYTES:])


def read_ledger_keys(config: BankConfig, backend: KeyBackend) -> LedgerKeys:
    """The ledger keys, opened through ``backend``; a plaintext file is refused
    (``PlaintextLedgerKeys``, naming the command that seals it)."""
    path = config.path(config.ledger_keys)
    document = _load(path)
    if is_plaintext(document):
        _plaintext_keys(path, document)  # a damaged one is named so, not sent to be sealed
        raise PlaintextLedgerKeys(
            f"{path} holds the ledger keys in plaintext; the bank opens them only sealed"
            f" under its key backend: seal them with `{seal_command(config)}`"
        )
    return _unseal(path, _sealed(path, document), backend)


@dataclass(frozen=True)
class SealOutcome:
    """What ``seal_ledger_keys`` did: sealed a plaintext file, or found it sealed."""

    path: Path
    sealed_now: bool
    key: str


def seal_ledger_keys(config: BankConfig, backend: KeyBackend, store: LedgerStore) -> SealOutcome:
    """Rewrite a plaintext ledger.keys sealed to the bank's gateway-token key, with the
    same keys (so every stored PAN and PAN index keeps working); a sealed one is only
    checked. Either way the keys must first be the ones the ledger in ``store`` is kept
    under (``check_belongs``): a plaintext file from elsewhere is refused, not sealed.
    The new file replaces the old atomically (a file beside it, 0600, synced, then
    renamed); on any failure the old file is left as it was."""
    path = config.path(config.ledger_keys)
    document = _load(path)
    if not is_plaintext(document):
        sealed = _sealed(path, document)
        check_belongs(config, store, _unseal(path, sealed, backend))
        return SealOutcome(path, False, f"{sealed.label!r} v{sealed.version}")
    keys = _plaintext_keys(path, document)
    check_belongs(config, store, keys)
    # The seed's version, as the bank's start takes it: with two, sealing to the newest
    # would name, for the start's advice, a key the token seed does not open with.
    key = sole_version(backend, config)
    data = sealed_bytes(backend, key, keys)
    # Checked before the rename: the file written must open, through this backend, to the
    # very keys it replaces.
    reopened = _unseal(path, _sealed(path, json.loads(data)), backend)
    if (reopened.data_key, reopened.index_key) != (keys.data_key, keys.index_key):
        raise BankIncomplete(f"{path}: the sealed keys did not open to the same keys")
    fresh = path.with_name(f".{path.name}.sealing")
    fresh.unlink(missing_ok=True)  # left by a sealing that was killed: never renamed
    try:
        write_private(fresh, data)
        os.replace(fresh, path)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return SealOutcome(path, True, f"{key.label!r} v{key.version}")
