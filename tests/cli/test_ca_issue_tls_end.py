"""``setpay ca issue-tls`` says when the certificate it issued ends: transport
certificates last 90 days, and nothing else tells the operator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from cli.main import build_parser
from gateway.provisioning import InitResult, init_bank
from setcore.pki.tls import TLS_LIFETIME


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("issue-tls-end") / "bank", env={})


@pytest.mark.parametrize(("role", "name"), [("client", "shop-7"), ("server", "localhost")])
def test_issue_tls_prints_the_certificates_not_after(
    role: str, name: str, made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["ca", "issue-tls", "--config", str(made.config_path), "--role", role,
         "--name", name, "--out", str(tmp_path)]
    )  # fmt: skip
    issued_at = datetime.now(UTC)
    assert args.handler(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("wrote ")
    leaf = x509.load_pem_x509_certificates((tmp_path / f"{name}.pem").read_bytes())[0]
    ends = leaf.not_valid_after_utc
    assert lines[1] == f"notAfter {ends.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    # ISO 8601 in UTC, read back to the second the certificate holds.
    assert datetime.fromisoformat(lines[1].removeprefix("notAfter ")) == ends
    assert abs(ends - (issued_at + TLS_LIFETIME)).total_seconds() < 60
