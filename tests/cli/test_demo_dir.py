"""``setpay demo --dir D``: with a relative D the story runs and the directories it leaves
work; each secret they hold has a file of its own, which they name relative to themselves."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cli.main import main
from clients.errors import VaultError
from clients.wallet.config import load as load_wallet_config
from clients.wallet.vault import open_vault


def test_a_relative_demo_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--dir", "story", "--json"]) == 0
    capsys.readouterr()
    wallet = tmp_path / "story" / "wallet"
    written = (wallet / "wallet.toml").read_text()
    assert '"story/' not in written and "file:story/" not in written

    # The wallet it leaves is usable from anywhere: paths in it are its own.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["wallet", "--dir", "../story/wallet", "show"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "registered" in out and "4 purchases" in out


def test_each_secret_it_leaves_has_a_file_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--json"]) == 0
    capsys.readouterr()
    wallet, merchant = tmp_path / "demo" / "wallet", tmp_path / "demo" / "merchant"
    config = load_wallet_config(wallet, env={})
    assert config.passphrase_file is not None
    card = config.passphrase_file.read_text()
    keystores = {(party / "keys.pass").read_text() for party in (wallet, merchant)}
    # Three secrets, three files: the one that opens the merchant's keys, or the wallet's,
    # does not open the card.
    assert len({card, *keystores}) == 3
    for keystore in keystores:
        with pytest.raises(VaultError):
            open_vault(config.card_file, keystore)
    assert stat.S_IMODE(config.passphrase_file.stat().st_mode) == 0o600
    # Each file names its passphrase files relative to its own directory, as the README's
    # examples do: the pair works wherever it is moved.
    for written in (wallet / "wallet.toml", merchant / "merchant.toml"):
        assert str(tmp_path) not in written.read_text()
