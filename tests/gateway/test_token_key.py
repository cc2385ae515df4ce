"""The bank's token-sealing key has one version: a second, made by hand or by another tool,
is refused at the start, naming every version with the command that deletes it
(``gateway.token_key``), and ``setpay keys`` makes none.

Before, the bank opened its token seed with the newest version: with an EC key no error,
another master key, and every capture token sealed before refused WRONG_RECIPIENT.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import keys
from gateway.bank_errors import BankIncomplete
from gateway.bank_pki import GATEWAY_TOKEN_LABEL, bank_keys_uri, load_bank_pki
from gateway.config import BankConfig
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.uri import open_backend

from .ledger_keys_support import new_bank

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
    for version in (1, 2):
        assert f"--label gateway-token --version {version}" in message
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
        ["adopt", "--id", "01", "--usage", "token-sealing"],
    ],
    ids=["generate", "adopt"],
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
