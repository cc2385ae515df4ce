"""``setpay keys delete``: every version only when asked, and the bank's keys only under
its key lock on a stopped bank."""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from cli import demo_parts, keys
from gateway.bank_pki import ALL_LABELS, GATEWAY_KEX_LABEL, BankPki, bank_keys_uri
from gateway.config import load
from gateway.gateway_renewal import _take_back
from gateway.provisioning import init_bank
from gateway.renewal_lock import RENEW_TASK, holding_keys_lock
from hsm.base import KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage
from hsm.errors import TransientBackendError
from hsm.uri import PASSPHRASE_ENV, open_backend
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


def test_with_the_banks_configuration_its_own_key_backend_is_used(
    bank: Bank, capsys: pytest.CaptureFixture[str]
) -> None:
    # As OPERATIONS.md shows it: the configuration names the key backend.
    argv = ["delete", "--config", str(bank.config), "--label", GATEWAY_KEX_LABEL,
            "--version", "1"]  # fmt: skip
    code, out, _ = _keys(argv, capsys)
    assert (code, out) == (0, "deleted 'gateway-kex' (v1)\n")
    assert _versions(bank.keys, GATEWAY_KEX_LABEL, capsys) == []


def test_keys_naming_another_backend_than_the_banks_is_refused(
    bank: Bank, keystore_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["generate", "--keys", keystore_uri, "--label", GATEWAY_KEX_LABEL,
            "--usage", "key-exchange", "--algorithm", "ec-p256"]  # fmt: skip
    assert _keys(argv, capsys)[0] == 0
    # The bank checked stopped and locked would not be the one whose key goes: it was.
    argv = ["delete", "--keys", keystore_uri, "--config", str(bank.config),
            "--label", GATEWAY_KEX_LABEL, "--version", "1"]  # fmt: skip
    code, _, err = _keys(argv, capsys)
    assert code == 2
    assert f"is not the key backend {bank.config} names" in err
    assert "leave --keys out" in err
    assert _versions(keystore_uri, GATEWAY_KEX_LABEL, capsys) == ["1"]
    assert _versions(bank.keys, GATEWAY_KEX_LABEL, capsys) == ["1"]
    # The bank's own URI, as the configuration spells it or as the bank reads it, is it.
    argv[2] = bank.keys
    code, out, _ = _keys(argv, capsys)
    assert (code, out) == (0, "deleted 'gateway-kex' (v1)\n")


def test_a_delete_names_its_backend_one_way_or_the_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _keys(["delete", "--label", "merchant-sig", "--version", "1"], capsys)
    assert (code, err) == (
        2,
        "setpay keys delete: pass --keys, or --config with the bank's setpay.toml\n",
    )


class _Refusing:
    """A real key backend whose deletions the token refuses (it is busy)."""

    def __init__(self, backend: KeyBackend) -> None:
        self._backend = backend

    def list_keys(self) -> list[KeyHandle]:
        return self._backend.list_keys()

    def delete(self, label: str, version: int | None = None) -> None:
        raise TransientBackendError("token busy")

    def close(self) -> None:
        self._backend.close()


def _command_in(message: str, config: Path) -> list[str]:
    """The ``setpay keys delete`` command a message gives, its placeholder filled."""
    found = re.search(r"setpay keys delete (.*?--version \d+)", message)
    assert found, message
    words = found.group(1).replace("(the bank's setpay.toml)", "FILE")
    return [str(config) if word == "FILE" else word for word in shlex.split(words)]


def test_the_renewals_hint_is_a_command_that_deletes_the_version(
    bank: Bank, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    backend = open_backend(bank.keys)
    try:
        backend.generate(GATEWAY_KEX_LABEL, KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
        pki = cast(BankPki, SimpleNamespace(backend=_Refusing(backend)))
        with caplog.at_level(logging.WARNING, logger="setpay"):
            _take_back(load(bank.config, env={}), pki, {GATEWAY_KEX_LABEL: 1})
    finally:
        backend.close()
    (hint,) = [record.getMessage() for record in caplog.records]
    argv = _command_in(hint, bank.config)
    assert argv[:2] == ["--config", str(bank.config)]
    code, out, err = _keys(["delete", *argv], capsys)
    assert (code, out, err) == (0, "deleted 'gateway-kex' (v2)\n", "")
    assert _versions(bank.keys, GATEWAY_KEX_LABEL, capsys) == ["1"]


def test_no_bank_deletes_the_gateways_labels_from_a_backend_no_bank_uses(
    keystore_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _generate(keystore_uri, "gateway-sig", capsys)
    argv = ["delete", "--keys", keystore_uri, "--label", "gateway-sig", "--all-versions"]
    code, _, err = _keys(argv, capsys)
    assert code == 1
    assert "(or --no-bank if no bank uses this key backend)" in err
    with pytest.raises(SystemExit):
        _parse(["keys", *argv, "--no-bank", "--config", "setpay.toml"])
    assert "not allowed with argument" in capsys.readouterr().err
    code, out, _ = _keys([*argv, "--no-bank"], capsys)
    assert (code, out) == (0, "deleted 'gateway-sig' (every version)\n")
    assert _versions(keystore_uri, "gateway-sig", capsys) == []


def test_the_demos_hint_deletes_the_keys_its_bank_left(
    bank: Bank, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = demo_parts.open_backend
    monkeypatch.setattr(demo_parts, "open_backend", lambda uri: _Refusing(opened(uri)))
    demo_parts.delete_bank_keys(load(bank.config))
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert err.startswith(
        "setpay demo: could not remove the demo bank's keys brand-root (TransientBackendError), "
    )
    # The demo's bank directory, with its configuration, is gone by then: no --config.
    commands = [shlex.split(line) for line in err.splitlines() if line.startswith("  setpay ")]
    assert len(commands) == len(ALL_LABELS)
    for argv in commands:
        assert argv[:3] == ["setpay", "keys", "delete"]
        code, _, failed = _keys(argv[2:], capsys)
        assert (code, failed) == (0, "")
    assert _keys(["list", "--keys", bank.keys], capsys)[1].splitlines()[1:] == []
