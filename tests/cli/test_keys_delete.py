"""``setpay keys delete``: every version only when asked, and the bank's keys only under
its key lock on a stopped bank."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli import keys
from gateway.bank_pki import GATEWAY_KEX_LABEL, bank_keys_uri
from gateway.config import load
from gateway.provisioning import init_bank
from gateway.renewal_lock import RENEW_TASK, holding_keys_lock
from hsm.uri import PASSPHRASE_ENV
from tests.ports import free_port

PASSPHRASE = "cli keystore passphrase"


@dataclass(frozen=True)
class Bank:
    """A bank made by ``init_bank`` (never started), on ports of its own."""

    config: Path
    keys: str
    listen: str


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="setpay")
    keys.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _keys(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = keys.run(_parse(["keys", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _versions(uri: str, label: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out, _ = _keys(["list", "--keys", uri], capsys)
    assert code == 0
    return [line.split()[1] for line in out.splitlines()[1:] if line.split()[0] == label]


@pytest.fixture
def keystore_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    return f"soft:{tmp_path / 'keystore'}"


@pytest.fixture
def bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bank]:
    ports = {
        "SETPAY_LISTEN": f"127.0.0.1:{free_port()}",
        "SETPAY_CA_LISTEN": f"127.0.0.1:{free_port()}",
    }
    for name, value in ports.items():
        monkeypatch.setenv(name, value)
    directory = tmp_path / "bank"
    init_bank(directory, env={})
    config = directory / "setpay.toml"
    yield Bank(config, bank_keys_uri(load(config, env=ports)), ports["SETPAY_LISTEN"])


def _generate(uri: str, label: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--keys", uri, "--label", label, "--usage", "signature",
            "--algorithm", "ec-p256"]  # fmt: skip
    assert _keys(argv, capsys)[0] == 0


def test_every_version_goes_only_when_asked_by_name(
    keystore_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        _generate(keystore_uri, "merchant-sig", capsys)
    # Without --version, it used to destroy every version, the one in use too.
    with pytest.raises(SystemExit) as usage:
        _parse(["keys", "delete", "--keys", keystore_uri, "--label", "merchant-sig"])
    assert usage.value.code == 2
    assert "--version" in capsys.readouterr().err
    assert _versions(keystore_uri, "merchant-sig", capsys) == ["1", "2"]
    with pytest.raises(SystemExit):
        _parse(["keys", "delete", "--keys", keystore_uri, "--label", "merchant-sig",
                "--version", "1", "--all-versions"])  # fmt: skip
    code, out, _ = _keys(
        ["delete", "--keys", keystore_uri, "--label", "merchant-sig", "--all-versions"], capsys
    )
    assert (code, out) == (0, "deleted 'merchant-sig' (every version)\n")
    assert _versions(keystore_uri, "merchant-sig", capsys) == []


def test_the_banks_own_key_needs_the_banks_configuration(
    bank: Bank, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["delete", "--keys", bank.keys, "--label", GATEWAY_KEX_LABEL, "--version", "1"]
    code, _, err = _keys(argv, capsys)
    assert code == 1
    assert "'gateway-kex' is the bank's own key: pass --config" in err
    assert _versions(bank.keys, GATEWAY_KEX_LABEL, capsys) == ["1"]


def test_no_deletion_while_a_renewal_holds_the_banks_key_lock(
    bank: Bank, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["delete", "--keys", bank.keys, "--label", GATEWAY_KEX_LABEL, "--version", "1",
            "--config", str(bank.config)]  # fmt: skip
    with holding_keys_lock(load(bank.config), RENEW_TASK):
        code, _, err = _keys(argv, capsys)
    assert code == 1
    assert "renew-gateway (pid" in err and "this keys delete changed nothing" in err
    assert _versions(bank.keys, GATEWAY_KEX_LABEL, capsys) == ["1"]


def test_no_deletion_while_the_bank_runs(bank: Bank, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["delete", "--keys", bank.keys, "--label", GATEWAY_KEX_LABEL, "--version", "1",
            "--config", str(bank.config)]  # fmt: skip
    host, _, port = bank.listen.rpartition(":")
    with socket.socket() as listener:
        listener.bind((host, int(port)))
        listener.listen()
        code, _, err = _keys(argv, capsys)
    assert code == 1
    assert "stop the bank before deleting 'gateway-kex'" in err
    assert _versions(bank.keys, GATEWAY_KEX_LABEL, capsys) == ["1"]
    # Stopped and unlocked: the operator's deletion goes ahead.
    code, out, _ = _keys(argv, capsys)
    assert (code, out) == (0, "deleted 'gateway-kex' (v1)\n")
