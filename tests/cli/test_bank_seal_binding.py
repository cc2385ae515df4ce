"""``setpay bank seal-ledger-keys`` seals only the ledger's own keys: a plaintext file from
elsewhere (another bank's, an old backup's) is refused and nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import BankConfig
from gateway.ledger import LedgerKeys
from tests.cards import card
from tests.cli.seal_support import new_bank, run_seal
from tests.gateway.key_binding_support import forge_sealed_file, key_check_rows
from tests.gateway.ledger_keys_support import (
    held_keys,
    make_older_bank,
    traces,
    write_plaintext,
)

PANS = [card("499999", serial) for serial in (61, 62)]
REFUSED = "ledger.keys does not belong to this ledger"


def _refused_and_unchanged(
    config: BankConfig, capsys: pytest.CaptureFixture[str], given: LedgerKeys
) -> None:
    path = config.path(config.ledger_keys)
    before, rows = path.read_bytes(), key_check_rows(config)
    code, out, err = run_seal(config, capsys)
    assert (code, out) == (1, "") and REFUSED in err
    for trace in traces(given):
        assert trace not in err.encode()
    assert path.read_bytes() == before
    assert list(path.parent.glob(".ledger.keys*")) == []
    assert key_check_rows(config) == rows


def test_another_banks_plaintext_file_is_not_sealed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_bank(tmp_path / "bank")
    held_keys(config)  # the ledger has its key check
    other = LedgerKeys.generate()
    write_plaintext(config.path(config.ledger_keys), other)
    _refused_and_unchanged(config, capsys, other)


def test_a_plaintext_file_not_the_older_ledgers_is_not_sealed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_bank(tmp_path / "bank")
    own, _ = make_older_bank(config, PANS)  # cards, and no key check
    assert key_check_rows(config) == []
    other = LedgerKeys.generate()
    write_plaintext(config.path(config.ledger_keys), other)
    _refused_and_unchanged(config, capsys, other)
    assert key_check_rows(config) == []

    # Its own file is checked against a card, sealed, and the ledger gets its key check.
    write_plaintext(config.path(config.ledger_keys), own)
    code, out, err = run_seal(config, capsys)
    assert (code, err) == (0, "") and "sealed to key 'gateway-token' v1" in out
    assert held_keys(config) == own
    assert len(key_check_rows(config)) == 1


def test_a_sealed_file_that_is_not_the_ledgers_is_refused_when_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_bank(tmp_path / "bank")
    held_keys(config)
    chosen = LedgerKeys.generate()
    forge_sealed_file(config, chosen)
    _refused_and_unchanged(config, capsys, chosen)
