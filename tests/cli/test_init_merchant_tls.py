"""``setpay init`` writes a merchant's TLS credentials (a client credential the gateway's
mutual TLS accepts) only when asked: ``--merchant-tls``, as the demo and bench do."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from cli import init
from hsm.uri import PASSPHRASE_ENV

from .test_init import _openssl_verify

MERCHANT_FILES = [
    "merchant-client.key", "merchant-client.pem", "merchant-server.key", "merchant-server.pem"
]  # fmt: skip


def _init(argv: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    parser = argparse.ArgumentParser(prog="setpay")
    init.add_parser(parser.add_subparsers(dest="command", required=True))
    code = init.run(parser.parse_args(["init", *argv]))
    assert code == 0, capsys.readouterr().err
    return code


def test_a_plain_init_writes_no_merchant_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    _init([str(tmp_path / "bank")], capsys)
    written = sorted(p.name for p in (tmp_path / "bank" / "tls").iterdir())
    assert not [name for name in written if name.startswith("merchant-")], written


def test_init_with_merchant_tls_writes_a_merchants_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    _init([str(tmp_path / "bank"), "--merchant-tls"], capsys)
    tls = tmp_path / "bank" / "tls"
    written = sorted(p.name for p in tls.iterdir() if p.name.startswith("merchant-"))
    assert written == MERCHANT_FILES
    for name in ("merchant-client.key", "merchant-server.key"):
        assert stat.S_IMODE((tls / name).stat().st_mode) == 0o600, name
    for chain in ("merchant-client.pem", "merchant-server.pem"):
        output = _openssl_verify(
            "-CAfile", str(tls / "root.pem"), "-untrusted", str(tls / chain), str(tls / chain)
        )
        assert output.strip().endswith(": OK"), output
