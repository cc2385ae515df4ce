"""A bank made with the default keys keeps its keystore passphrase in the bank directory
(``keys.pass``, beside ``ledger.keys``): a copy of the directory opens every key and so
every PAN. ``setpay init`` says where the file is and what a bank uses instead, and
``setpay gateway serve`` warns of such a file at each start, naming it, never its
contents. A bank whose PIN or passphrase comes from elsewhere hears neither."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from cli import gateway, init
from gateway import workers
from gateway.config import load
from gateway.provisioning import init_bank
from hsm.uri import PASSPHRASE_ENV

GATEWAY_LOGGER = "setpay.gateway"


def _init(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser(prog="setpay")
    init.add_parser(parser.add_subparsers(dest="command", required=True))
    assert init.run(parser.parse_args(["init", *argv])) == 0
    return capsys.readouterr().out


def test_init_says_where_the_passphrase_is_and_what_a_bank_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # It said only "keys soft:keys (in the bank directory)".
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    directory = tmp_path / "bank"
    out = _init([str(directory)], capsys)
    notice = out[out.index("  keystore passphrase in ") :]
    assert f"in {directory / 'keys.pass'}:" in notice
    assert "opens the bank's keys, and so every card number" in notice
    assert "For trying setpay out only" in notice
    assert "a token, or a passphrase file" in notice and "--keys URI" in notice
    assert len(notice.splitlines()) == 3
    assert (directory / "keys.pass").read_text().strip() not in out


def test_init_says_nothing_of_a_passphrase_file_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "a passphrase from the environment")
    assert "keystore passphrase" not in _init([str(tmp_path / "from-env")], capsys)
    outside = _passphrase_file(tmp_path / "secrets")
    keys = f"soft:{tmp_path / 'keystore'};pin-source=file:{outside}"
    assert "keystore passphrase" not in _init([str(tmp_path / "given"), "--keys", keys], capsys)


def _passphrase_file(directory: Path) -> Path:
    directory.mkdir(mode=0o700)
    path = directory / "keystore.pass"
    path.write_text("a passphrase kept outside the bank\n")
    path.chmod(0o600)
    return path


def _serve(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``setpay gateway serve`` up to the workers, which are not started."""
    monkeypatch.setattr(workers, "serve", lambda *args, **kwargs: 0)
    parser = argparse.ArgumentParser(prog="setpay")
    gateway.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gateway", "serve", "--config", str(config)])
    assert gateway.run(args) == 0


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == GATEWAY_LOGGER and record.levelno == logging.WARNING
    ]


def test_serve_warns_of_the_passphrase_file_in_the_bank_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made = init_bank(tmp_path / "bank", env={})  # as README's `setpay init bank` makes it
    caplog.set_level(logging.WARNING, GATEWAY_LOGGER)
    _serve(made.config_path, monkeypatch)
    [warning] = _warnings(caplog)
    assert f"from {made.directory / 'keys.pass'}, a file inside the bank directory" in warning
    assert "opens the software keystore with it, and so every card number" in warning
    assert "for trying setpay out only" in warning
    assert (made.directory / "keys.pass").read_text().strip() not in caplog.text


def test_serve_follows_a_link_into_the_bank_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made = init_bank(tmp_path / "bank", env={})
    link = tmp_path / "elsewhere.pass"
    link.symlink_to(made.directory / "keys.pass")
    config = load(made.config_path, env={})
    text = made.config_path.read_text().replace(config.keys, f"soft:keys;pin-source=file:{link}")
    made.config_path.write_text(text)
    caplog.set_level(logging.WARNING, GATEWAY_LOGGER)
    _serve(made.config_path, monkeypatch)
    [warning] = _warnings(caplog)
    assert f"from {made.directory.resolve() / 'keys.pass'}, a file inside" in warning


def test_serve_is_quiet_for_a_passphrase_kept_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outside = _passphrase_file(tmp_path / "secrets")
    made = init_bank(tmp_path / "bank", keys=f"soft:keys;pin-source=file:{outside}", env={})
    monkeypatch.setenv(PASSPHRASE_ENV, "a passphrase from the environment")
    from_env = init_bank(tmp_path / "from-env")
    caplog.set_level(logging.WARNING, GATEWAY_LOGGER)
    _serve(made.config_path, monkeypatch)
    _serve(from_env.config_path, monkeypatch)
    assert _warnings(caplog) == []
