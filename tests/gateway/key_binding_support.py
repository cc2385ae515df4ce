"""What the tests of ledger.keys bound to its ledger share: a sealed file forged with the
token key's public half alone, and the ledger's key check as its database holds it."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.bank_pki import GATEWAY_TOKEN_LABEL, bank_keys_uri
from gateway.config import BankConfig
from gateway.ledger import LedgerKeys
from gateway.ledger_keys import _WRAP_INFO, FORMAT
from hsm.uri import open_backend
from setcore.encoding import digest
from setcore.envelope import KEY_BYTES, NONCE_BYTES, Recipient, encapsulate
from setcore.registration import key_thumbprint, spki_of
from setcore.token_seal import _MASTER_INFO, KEY_ID_CT, _spki


def forge_sealed_file(config: BankConfig, chosen: LedgerKeys) -> None:
    """Replace the bank's ledger.keys with ``chosen`` sealed to its gateway-token key, as
    anyone who can write the file can: with the key's PUBLIC half only (read here from
    the backend; a token shows it to anyone, and the bank's certificates hold the rest)."""
    with open_backend(bank_keys_uri(config)) as backend:
        key = backend.get(GATEWAY_TOKEN_LABEL)
    assert key.kem is not None
    # From here on nothing but public values.
    ikm, seed = encapsulate(Recipient(key.public_key, b"", key.kem))
    key_id = digest(KEY_ID_CT, _spki(key) + seed)
    master = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_MASTER_INFO + key_id
    ).derive(ikm)
    wrap = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_WRAP_INFO + key_id
    ).derive(master)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(wrap).encrypt(
        nonce, chosen.data_key + chosen.index_key, FORMAT.encode() + b"\x00" + key_id
    )
    document = {
        "format": FORMAT,
        "key": {
            "label": key.label,
            "version": key.version,
            "thumbprint": key_thumbprint(spki_of(key.public_key)).hex(),
        },
        "seed": seed.hex(),
        "nonce": nonce.hex(),
        "ciphertext": ciphertext.hex(),
    }
    path = config.path(config.ledger_keys)
    path.write_text(json.dumps(document))
    path.chmod(0o600)


def _ledger_db(config: BankConfig) -> Path:
    url = config.ledger_url()
    assert url.startswith("sqlite:")
    return Path(url[len("sqlite:") :])


def key_check_rows(config: BankConfig) -> list[tuple[bytes, bytes]]:
    """The rows of the bank's ledger's key check (SQLite), read over a connection of its own."""
    conn = sqlite3.connect(_ledger_db(config))
    try:
        return list(conn.execute("SELECT index_check, data_check FROM ledger_key_check"))
    finally:
        conn.close()


def forget_key_check(config: BankConfig) -> None:
    """The bank's ledger as a release before the key check left it: no record."""
    conn = sqlite3.connect(_ledger_db(config))
    try:
        conn.execute("DELETE FROM ledger_key_check")
        conn.commit()
    finally:
        conn.close()
