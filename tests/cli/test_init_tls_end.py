"""``setpay init`` says when the TLS server certificate it made ends, as ``setpay ca
issue-tls`` says of the ones it issues: transport certificates last 90 days, and the
bank refuses to start on one that has ended."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from cli import init
from hsm.uri import PASSPHRASE_ENV
from setcore.pki.tls import TLS_LIFETIME


def test_init_prints_the_tls_server_certificates_not_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    directory = tmp_path / "bank"
    parser = argparse.ArgumentParser(prog="setpay")
    init.add_parser(parser.add_subparsers(dest="command", required=True))
    made_at = datetime.now(UTC)
    assert init.run(parser.parse_args(["init", str(directory)])) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if "notAfter" in line]
    served = directory.resolve() / "tls" / "gateway.pem"
    ends = x509.load_pem_x509_certificates(served.read_bytes())[0].not_valid_after_utc
    assert line == f"  TLS server certificate {served} notAfter {ends:%Y-%m-%dT%H:%M:%SZ}"
    # ISO 8601 in UTC, read back to the second the certificate holds.
    assert datetime.fromisoformat(line.rpartition(" notAfter ")[2]) == ends
    assert abs(ends - (made_at + TLS_LIFETIME)).total_seconds() < 60
