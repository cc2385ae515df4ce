"""The ledger's own record of the keys it is kept under (``ledger_key_check``, schema
version 5), so that keys that are not this ledger's are refused before a PAN is sealed or
looked up under them.

Why the ledger and not the keys file: ``ledger.keys`` is sealed under the bank's key
backend, but sealing one takes only the public half of the key it is sealed to. Whoever
can write the file can hand the bank keys of their choosing (or an old backup's, or
another bank's); under them the bank would seal every new PAN with a key someone else
knows, find none of its cards, and open a second account for a card it already holds.
A file cannot show that it belongs; the ledger it protects can.

The record, one row::

    index_check    HMAC-SHA-256(index key, INDEX_CHECK_LABEL)
    data_check     nonce || AES-256-GCM(data key, nonce, DATA_CHECK_TEXT, AD = DATA_CHECK_AD)
    written_at_ms  when it was written

Neither gives a key away: a MAC and a ciphertext of public texts. Their labels are their
own (no PAN's seal or index uses them), so neither can stand for a card's values, nor a
card's values for them.

``check_ledger_keys`` runs at every open with keys (``gateway.issuer.open_ledger``, and
``setpay bank seal-ledger-keys`` before it seals):

- a record: the keys must match it;
- no record, and card accounts (a ledger of an older release): the keys must open the
  first card's sealed PAN, and give that PAN the card's index; then the record is written;
- no record and no card (a new ledger): the record is written. Nothing but being first
  binds the keys that first open a new ledger.

A record is written with ``INSERT ... ON CONFLICT DO NOTHING`` and read back in the same
transaction: workers that open a new ledger together all write, one row stays, and each
compares its own keys with that row.

The keys never leave this process: the store (perhaps the ledger service, another process,
``wire``, hence this module's place among ``SHIPPED_MODULES``) is given the record's
values and gives back the record and one card's stored row; the comparing is done here.
A mismatch is ``ForeignLedgerKeys``, whose message says which check failed, never a value.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import partial

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.ledger.errors import LedgerError, PanUnreadable, StoreError
from gateway.ledger.pan import NONCE_BYTES, TAG_BYTES, LedgerKeys, open_pan, pan_index
from gateway.ledger.store import LedgerStore, Row, Transaction

# Domain separation (DESIGN.md section 3), as ``pan``'s labels: texts no other use of
# either key is given.
INDEX_CHECK_LABEL = b"setpay.v1.ledger.key-check.index\x00"
DATA_CHECK_TEXT = b"setpay.v1.ledger.key-check.data"
DATA_CHECK_AD = b"setpay.v1.ledger.key-check\x00"


class ForeignLedgerKeys(LedgerError):
    """The keys are not the ones this ledger is kept under; nothing was written."""


class KeyCheck(enum.Enum):
    """How ``check_ledger_keys`` found the keys to be this ledger's."""

    MATCHED = "they match the ledger's key check"
    CHECKED_AGAINST_CARD = "they open a card of the ledger, which now keeps a key check of them"
    FIRST_KEYS = "the ledger holds no card yet, and now keeps a key check of them"


@dataclass(frozen=True, repr=False)
class KeyRecord:
    """The ledger's key check, as stored."""

    index_check: bytes
    data_check: bytes

    def __repr__(self) -> str:
        """Name it without its bytes (they are no secret, but a log is no place for them)."""
        return "KeyRecord(<stored>)"


@dataclass(frozen=True, repr=False)
class StoredCard:
    """One card account's stored PAN values."""

    account_id: str
    pan_index: bytes
    pan_sealed: bytes

    def __repr__(self) -> str:
        """Name the account only."""
        return f"StoredCard({self.account_id!r})"


@dataclass(frozen=True)
class Found:
    """What an open finds: the record, or without one the first card account (if any)."""

    record: KeyRecord | None
    card: StoredCard | None


@dataclass(frozen=True)
class Written:
    """The record after a write, and whether this write made it (not a concurrent one)."""

    record: KeyRecord
    inserted: bool


_SELECT_RECORD = "SELECT index_check, data_check FROM ledger_key_check WHERE id = 1"


def _record(row: Row) -> KeyRecord:
    return KeyRecord(bytes(row["index_check"]), bytes(row["data_check"]))


def find(tx: Transaction) -> Found:
    """The ledger's key check; without one, the card account of the smallest id."""
    row = tx.one(_SELECT_RECORD)
    if row is not None:
        return Found(_record(row), None)
    card = tx.one(
        "SELECT account_id, pan_index, pan_sealed FROM card_accounts ORDER BY account_id LIMIT 1"
    )
    if card is None:
        return Found(None, None)
    stored = StoredCard(
        str(card["account_id"]), bytes(card["pan_index"]), bytes(card["pan_sealed"])
    )
    return Found(None, stored)


def write_record(tx: Transaction, *, index_check: bytes, data_check: bytes, now_ms: int) -> Written:
    """Write the key check unless one is there; the one there after, either way."""
    inserted = tx.run(
        "INSERT INTO ledger_key_check (id, index_check, data_check, written_at_ms)"
        " VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        index_check,
        data_check,
        now_ms,
    )
    row = tx.one(_SELECT_RECORD)
    if row is None:
        raise StoreError("the ledger's key check is not there after it was written")
    return Written(_record(row), inserted == 1)


def _index_check(keys: LedgerKeys) -> bytes:
    return hmac.new(keys.index_key, INDEX_CHECK_LABEL, hashlib.sha256).digest()


def record_of(keys: LedgerKeys) -> KeyRecord:
    """A new key check for ``keys`` (its data check under a fresh nonce)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(keys.data_key).encrypt(nonce, DATA_CHECK_TEXT, DATA_CHECK_AD)
    return KeyRecord(_index_check(keys), nonce + sealed)


def _compare(keys: LedgerKeys, record: KeyRecord) -> None:
    """ForeignLedgerKeys unless both keys are the ones ``record`` was made with."""
    wrong = []
    data = record.data_check
    try:
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise InvalidTag
        opened = AESGCM(keys.data_key).decrypt(
            data[:NONCE_BYTES], data[NONCE_BYTES:], DATA_CHECK_AD
        )
        if not hmac.compare_digest(opened, DATA_CHECK_TEXT):
            raise InvalidTag
    except InvalidTag:
        wrong.append("data key")
    if not hmac.compare_digest(_index_check(keys), record.index_check):
        wrong.append("index key")
    if wrong:
        verb = "does" if len(wrong) == 1 else "do"
        raise ForeignLedgerKeys(
            f"its {' and '.join(wrong)} {verb} not match the key check the ledger keeps"
        )


def _check_card(keys: LedgerKeys, card: StoredCard) -> None:
    """ForeignLedgerKeys unless the keys open the card's PAN and give it its index."""
    try:
        pan = open_pan(keys, card.account_id, card.pan_sealed)
    except PanUnreadable:
        raise ForeignLedgerKeys(
            f"its data key does not open the stored PAN of card account {card.account_id}"
        ) from None
    if not hmac.compare_digest(pan_index(keys, pan), card.pan_index):
        raise ForeignLedgerKeys(
            f"its index key does not give card account {card.account_id} its stored index"
        )


def check_ledger_keys(store: LedgerStore, keys: LedgerKeys, now_ms: int) -> KeyCheck:
    """Whether ``keys`` are the ones the ledger in ``store`` is kept under (see the module
    docstring), writing the key check when the ledger has none; ForeignLedgerKeys if not,
    with nothing written."""
    found = store.read(find)
    if found.record is not None:
        _compare(keys, found.record)
        return KeyCheck.MATCHED
    how = KeyCheck.FIRST_KEYS
    if found.card is not None:
        _check_card(keys, found.card)
        how = KeyCheck.CHECKED_AGAINST_CARD
    mine = record_of(keys)
    written = store.execute(
        partial(
            write_record, index_check=mine.index_check, data_check=mine.data_check, now_ms=now_ms
        )
    )
    _compare(keys, written.record)  # another open's, if it wrote first
    return how if written.inserted else KeyCheck.MATCHED
