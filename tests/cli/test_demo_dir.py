"""``setpay demo --dir D`` with a relative D: the story runs, the directories it leaves work."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main


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
