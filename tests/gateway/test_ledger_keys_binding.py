"""ledger.keys bound to its ledger: a sealed file that opens, but to keys the ledger is not
kept under (forged with the token key's public half, an old backup's), is refused before
a PAN is sealed or looked up under it; a ledger of an older release is checked against a
card, then gets its key check."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.bank_pki import BankIncomplete
from gateway.config import BankConfig
from gateway.issuer import open_ledger
from gateway.ledger import LedgerKeys
from gateway.process import start_bank
from tests.cards import card

from .key_binding_support import forge_sealed_file, forget_key_check, key_check_rows
from .ledger_keys_support import found_account, held_keys, new_bank, open_card, traces

PANS = [card("499999", serial) for serial in (51, 52)]
REFUSED = "ledger.keys does not belong to this ledger"


def _refused(config: BankConfig, chosen: LedgerKeys) -> str:
    """The refusal of open_ledger, checked to hold none of ``chosen``."""
    with pytest.raises(BankIncomplete, match=REFUSED) as refused:
        open_ledger(config)
    message = str(refused.value)
    for trace in traces(chosen):
        assert trace not in message.encode()
    return message


def test_init_writes_the_key_check_and_every_open_checks_it(tmp_path: Path) -> None:
    config = new_bank(tmp_path / "bank")
    rows = key_check_rows(config)  # before any open
    held = held_keys(config)
    assert key_check_rows(config) == rows
    assert len(rows) == 1
    for trace in traces(held):
        assert all(trace not in value for value in rows[0])  # it reveals neither key
    account = open_card(config, PANS[0])
    assert key_check_rows(config) == rows  # checked, not written again
    assert found_account(config, PANS[0]) == account


def test_a_file_forged_with_the_public_key_is_refused(tmp_path: Path) -> None:
    config = new_bank(tmp_path / "bank")
    account = open_card(config, PANS[0])
    rows = key_check_rows(config)
    kept = config.path(config.ledger_keys).read_bytes()
    chosen = LedgerKeys.generate()
    forge_sealed_file(config, chosen)
    message = _refused(config, chosen)
    assert "index key" in message and "data key" in message
    # Nor does a worker start on it.
    with pytest.raises(BankIncomplete, match=REFUSED):
        start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    assert key_check_rows(config) == rows
    # The bank's own file, put back, opens its card as before.
    config.path(config.ledger_keys).write_bytes(kept)
    assert found_account(config, PANS[0]) == account


def test_a_forged_file_is_refused_on_a_ledger_opened_but_without_cards(tmp_path: Path) -> None:
    config = new_bank(tmp_path / "bank")
    held_keys(config)
    chosen = LedgerKeys.generate()
    forge_sealed_file(config, chosen)
    _refused(config, chosen)


def test_an_older_banks_ledger_is_checked_against_a_card_then_gets_its_key_check(
    tmp_path: Path,
) -> None:
    config = new_bank(tmp_path / "bank")
    accounts = [open_card(config, pan) for pan in PANS]
    forget_key_check(config)  # as a release before the key check left it
    assert found_account(config, PANS[1]) == accounts[1]
    assert len(key_check_rows(config)) == 1


def test_a_wrong_file_on_an_older_banks_ledger_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    config = new_bank(tmp_path / "bank")
    open_card(config, PANS[0])
    forget_key_check(config)
    chosen = LedgerKeys.generate()
    forge_sealed_file(config, chosen)
    message = _refused(config, chosen)
    assert "does not open the stored PAN of card account" in message
    assert key_check_rows(config) == []


def test_a_file_with_only_the_index_key_wrong_is_refused(tmp_path: Path) -> None:
    config = new_bank(tmp_path / "bank")
    held = held_keys(config)
    chosen = LedgerKeys(data_key=held.data_key, index_key=LedgerKeys.generate().index_key)
    forge_sealed_file(config, chosen)
    message = _refused(config, chosen)
    assert "its index key does not match" in message and "data key" not in message


def test_a_forged_file_before_the_first_open_of_a_new_ledger_is_refused(tmp_path: Path) -> None:
    # init writes the SQLite ledger's key check while it holds the keys: a file forged
    # between init and the first open is refused as one forged later is. (A PostgreSQL
    # ledger, configured after init, is bound by its first open: test_ledger_keys_first_open.)
    config = new_bank(tmp_path / "bank")
    chosen = LedgerKeys.generate()
    forge_sealed_file(config, chosen)
    message = _refused(config, chosen)
    assert "index key" in message and "data key" in message
    assert len(key_check_rows(config)) == 1  # init's, before any open
