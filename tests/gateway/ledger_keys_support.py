"""What the ledger keys tests share: a new bank, a card account opened and found again
through its ledger, the bank's keys as its ledger holds them, and an older bank's
plaintext ledger.keys with accounts opened under it."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from gateway.config import BankConfig, load
from gateway.issuer import open_ledger, open_store
from gateway.ledger import Ledger, LedgerKeys
from gateway.provisioning import init_bank
from tests.gateway.key_binding_support import forget_key_check


def new_bank(directory: Path, keys: str | None = None) -> BankConfig:
    """A new EC bank made by ``setpay init`` in ``directory`` (its keys behind the key URI
    ``keys``, or in the default keystore), its configuration loaded."""
    init_bank(directory, profile="ec", keys=keys, env={})
    return load(directory / "setpay.toml", env={})


def open_card(config: BankConfig, pan: str) -> str:
    """A card account for ``pan`` opened through the bank's ledger, closed after; its id."""
    ledger = open_ledger(config)
    try:
        return ledger.open_card_account(pan, "203012", 5000, 978).account_id
    finally:
        ledger.close()


def found_account(config: BankConfig, pan: str) -> str:
    """The id of ``pan``'s card account as a new open of the bank's ledger finds it."""
    ledger = open_ledger(config)
    try:
        return ledger.find_card_account(pan).account_id
    finally:
        ledger.close()


def held_keys(config: BankConfig) -> LedgerKeys:
    """The keys ``open_ledger`` protects the bank's PANs with."""
    ledger = open_ledger(config)
    try:
        keys: LedgerKeys = ledger._keys  # what the file must not give away
        return keys
    finally:
        ledger.close()


def traces(keys: LedgerKeys) -> list[bytes]:
    """Each key as a file could hold it: raw, hex (either case) and base64."""
    found = []
    for key in (keys.data_key, keys.index_key):
        found += [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)]
    return found


def write_plaintext(path: Path, keys: LedgerKeys) -> None:
    """A ledger.keys as ``setpay init`` wrote it before the keys were sealed (format 1)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"data_key": keys.data_key.hex(), "index_key": keys.index_key.hex()}, f)


def open_accounts_as_before(config: BankConfig, keys: LedgerKeys, pans: list[str]) -> list[str]:
    """Card accounts opened under ``keys`` straight through the store, as an older bank's
    ledger opened them; their account ids."""
    ledger = Ledger(open_store(config), keys)
    try:
        return [ledger.open_card_account(pan, "203012", 5000, 978).account_id for pan in pans]
    finally:
        ledger.close()


def make_older_bank(config: BankConfig, pans: list[str]) -> tuple[LedgerKeys, list[str]]:
    """Turn a new bank into an older one: a plaintext ledger.keys with new keys, and
    accounts for ``pans`` opened under them, in a ledger without a key check (an older
    init wrote no ledger: its first open made one)."""
    forget_key_check(config)
    keys = LedgerKeys.generate()
    write_plaintext(config.path(config.ledger_keys), keys)
    return keys, open_accounts_as_before(config, keys, pans)
