"""``setpay bank seal-ledger-keys``: an older bank's plaintext ledger.keys sealed under its
key backend, with the same keys, so the accounts opened before work as they did."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gateway.issuer import open_ledger
from tests.cards import card
from tests.cli.command_support import run_bank
from tests.cli.seal_support import new_bank, run_seal
from tests.gateway.ledger_keys_support import held_keys, make_older_bank, traces

PANS = [card("499999", serial) for serial in (31, 32, 33)]


def test_sealing_keeps_the_keys_and_the_accounts_opened_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_bank(tmp_path / "bank")
    keys, accounts = make_older_bank(config, PANS)
    path = config.path(config.ledger_keys)
    code, _, err = run_bank(
        ["--config", str(config.base_dir / "setpay.toml"), "show-account", "--account",
         accounts[0]], capsys,
    )  # fmt: skip
    assert code == 1 and "in plaintext" in err and "seal-ledger-keys" in err

    code, out, err = run_seal(config, capsys)
    assert (code, err) == (0, "")
    assert "sealed to key 'gateway-token' v1, with the same ledger keys" in out
    data = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.glob(".ledger.keys*")) == []  # the file beside it was renamed
    for trace in traces(keys):
        assert trace not in data and trace not in (out + err).encode()
    assert held_keys(config) == keys
    ledger = open_ledger(config)
    try:
        for pan, account in zip(PANS, accounts, strict=True):
            assert ledger.find_card_account(pan).account_id == account
            assert ledger.reveal_pan(account) == pan
    finally:
        ledger.close()

    # Once sealed, sealing again only checks it.
    code, out, _ = run_seal(config, capsys)
    assert code == 0 and "already sealed" in out and path.read_bytes() == data


def test_sealing_with_a_backend_that_does_not_open_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_bank(tmp_path / "bank")
    keys, _ = make_older_bank(config, PANS[:1])
    path = config.path(config.ledger_keys)
    before = path.read_bytes()
    (config.base_dir / "keys.pass").write_text("not the keystore's passphrase\n")
    code, _, err = run_seal(config, capsys)
    assert code == 1 and err.startswith("setpay bank: ")
    assert path.read_bytes() == before
    assert list(path.parent.glob(".ledger.keys*")) == []
    for trace in traces(keys):
        assert trace not in err.encode()


def test_a_damaged_plaintext_file_is_not_sealed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_bank(tmp_path / "bank")
    path = config.path(config.ledger_keys)
    path.write_text(json.dumps({"data_key": "00" * 31, "index_key": "11" * 32}))
    code, _, err = run_seal(config, capsys)
    assert code == 1 and "is not a ledger keys file" in err and "00" * 31 not in err
    assert json.loads(path.read_text())["data_key"] == "00" * 31
