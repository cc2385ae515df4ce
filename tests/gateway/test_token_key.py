"""The bank's token-sealing key has one version: a second, made by hand or by another tool,
is refused at the start, naming the version ledger.keys is sealed to as the one to keep
and the command that deletes each other one, or no command when ledger.keys names none
(``gateway.token_key``); ``setpay keys`` makes none and deletes neither that version nor
every version, and ``seal-ledger-keys`` seals to no key of two.

Before, the bank opened its token seed with the newest version: with an EC key no error,
another master key, and every capture token sealed before refused WRONG_RECIPIENT.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cli import keys
from gateway.bank_errors import BankIncomplete
from gateway.bank_pki import GATEWAY_TOKEN_LABEL, bank_keys_uri, load_bank_pki
from gateway.config import BankConfig
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.uri import open_backend
from tests.cli.seal_support import run_seal

from .ledger_keys_support import make_older_bank, new_bank

XID, RRPID = bytes(range(32)), bytes(range(32, 64))


def _second_version(config: BankConfig) -> None:
    backend = open_backend(bank_keys_uri(config))
    try:
        made = backend.generate(GATEWAY_TOKEN_LABEL, KeyUsage.TOKEN_SEALING, KeyAlgorithm.EC_P256)
        assert made.version == 2
    finally:
        backend.close()


def test_a_second_token_sealing_key_version_keeps_the_bank_from_starting(
    tmp_path: Path,
) -> None:
    config = new_bank(tmp_path / "bank")
    first = load_bank_pki(config)
    try:  # a token sealed under v1, the version the seed was made for
        sealed = first.token_sealer().seal("CapToken", b"held", xid=XID, rrpid=RRPID)
    finally:
        first.close()
    _second_version(config)
    with pytest.raises(BankIncomplete) as refused:
        load_bank_pki(config)
    message = str(refused.value)
    assert "key 'gateway-token' has versions v1, v2" in message
    assert "the bank's token seed opens with only the one setpay init made" in message
    assert "Keep v1, the version ledger.keys is sealed to" in message
    # The command for the version made by hand only: the one for v1, pasted, destroyed the
    # key every stored card number is sealed under.
    assert "--label gateway-token --version 2" in message
    assert "--version 1" not in message
    # Following the advice for the version made by hand lets the bank start, on the seed's.
    backend = open_backend(bank_keys_uri(config))
    try:
        backend.delete(GATEWAY_TOKEN_LABEL, 2)
    finally:
        backend.close()
    pki = load_bank_pki(config)
    try:
        assert pki.token_key.version == 1
        assert pki.token_sealer().open(sealed, "CapToken") == b"held"
    finally:
        pki.close()


def _keys(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    keys.add_parser(parser.add_subparsers(dest="command", required=True))
    code = keys.run(parser.parse_args(["keys", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "--usage", "token-sealing", "--algorithm", "ec-p256"],
        ["import", "--usage", "token-sealing", "--pem", "no-such-key.pem"],
        ["adopt", "--id", "01", "--usage", "token-sealing"],
    ],
    ids=["generate", "import", "adopt"],
)
def test_setpay_keys_makes_no_token_sealing_key_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    config = new_bank(tmp_path / "bank")
    uri = bank_keys_uri(config)
    code, out, err = _keys([*command, "--keys", uri, "--label", GATEWAY_TOKEN_LABEL], capsys)
    assert (code, out) == (1, "")
    assert "'gateway-token' is the bank's token-sealing key" in err
    assert "nothing renews it" in err
    backend = open_backend(uri)
    try:
        versions = [k.version for k in backend.list_keys() if k.label == GATEWAY_TOKEN_LABEL]
    finally:
        backend.close()
    assert versions == [1]
    load_bank_pki(config).close()


def test_a_ledger_keys_naming_no_version_gets_no_delete_command(tmp_path: Path) -> None:
    # Sealed to none of them (here: the version it names rewritten): which one the seed
    # opens with cannot be told, and a guess could destroy the bank's key.
    config = new_bank(tmp_path / "bank")
    _second_version(config)
    path = config.path(config.ledger_keys)
    document = json.loads(path.read_text())
    document["key"]["version"] = 7
    path.write_text(json.dumps(document))
    with pytest.raises(BankIncomplete) as refused:
        load_bank_pki(config)
    message = str(refused.value)
    assert "ledger.keys is sealed to none of them" in message
    assert "setpay keys delete" not in message


@pytest.mark.parametrize(
    ("which", "refused"),
    [(["--version", "1"], True), (["--all-versions"], True), (["--version", "2"], False)],
    ids=["sealed-to", "every", "made-by-hand"],
)
def test_keys_delete_keeps_the_version_ledger_keys_is_sealed_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: list[str], refused: bool
) -> None:
    config = new_bank(tmp_path / "bank")
    _second_version(config)
    argv = ["delete", "--config", str(config.base_dir / "setpay.toml"),
            "--label", GATEWAY_TOKEN_LABEL, *which]  # fmt: skip
    code, out, err = _keys(argv, capsys)
    backend = open_backend(bank_keys_uri(config))
    try:
        left = sorted(k.version for k in backend.list_keys() if k.label == GATEWAY_TOKEN_LABEL)
    finally:
        backend.close()
    if refused:
        assert (code, out) == (1, "")
        assert "ledger.keys is sealed to v1" in err
        assert left == [1, 2]
    else:
        assert (code, err) == (0, "")
        assert left == [1]
        load_bank_pki(config).close()


def test_sealing_a_plaintext_ledger_keys_takes_no_key_of_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It sealed to the newest, which the start's advice then named as the one to keep:
    # the seed's version deleted, the bank on another master key.
    config = new_bank(tmp_path / "bank")
    make_older_bank(config, [])
    before = config.path(config.ledger_keys).read_bytes()
    _second_version(config)
    code, out, err = run_seal(config, capsys)
    assert (code, out) == (1, "")
    assert "key 'gateway-token' has versions v1, v2" in err
    assert "setpay keys delete" not in err  # a plaintext file names no version
    assert config.path(config.ledger_keys).read_bytes() == before
