"""Known-answer vectors for the ledger's PAN protection: every card row depends on them.

The PAN index finds an account by PAN and the sealed PAN's associated data binds it to
its account; the CA counts refused registrations under a keyed hash of its own. All
three are in rows written long ago, so a changed context label strands every card. The
vector was made once by ``tests/vectors/generate.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from gateway.ledger import LedgerKeys
from gateway.ledger.pan import card_refusals_key, open_pan, pan_index
from tests.cards import card

VECTOR = Path(__file__).parent.parent.parent / "vectors" / "ledger.json"


def _vector() -> tuple[dict[str, object], LedgerKeys, str]:
    v = json.loads(VECTOR.read_text())
    keys = LedgerKeys(
        data_key=bytes.fromhex(v["data_key_hex"]), index_key=bytes.fromhex(v["index_key_hex"])
    )
    return v, keys, card(v["card"]["bin"], v["card"]["serial"])


def test_pan_index_vector() -> None:
    v, keys, pan = _vector()
    assert pan_index(keys, pan).hex() == v["pan_index_hex"]


def test_card_refusals_vector() -> None:
    v, keys, pan = _vector()
    assert card_refusals_key(keys, pan).hex() == v["card_refusals_hex"]


def test_stored_sealed_pan_opens() -> None:
    v, keys, pan = _vector()
    sealed = bytes.fromhex(str(v["sealed_pan_hex"]))
    assert open_pan(keys, str(v["account_id"]), sealed) == pan
