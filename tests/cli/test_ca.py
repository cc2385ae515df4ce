"""``setpay ca revoke`` and ``setpay ca issue-tls`` on a bank made by ``init_bank``."""

from __future__ import annotations

import argparse
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from cli import ca
from gateway.config import load
from gateway.provisioning import InitResult, init_bank
from setcore.encoding import thumbprint
from tests.ca_db import published_revocation

ROOT_SERIAL_NOTE = "no CRL of this brand covers that certificate"


def _ca(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ca", *argv])
    assert args.handler is ca.run
    code = ca.run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("ca-cli") / "bank", env={})


def _sequence(result: InitResult) -> int:
    return published_revocation(result.directory)[0].sequence_num


def _serial(result: InitResult, name: str) -> int:
    der = (result.directory / "certs" / f"{name}.der").read_bytes()
    return x509.load_der_x509_certificate(der).serial_number


def test_parse_serial_forms() -> None:
    assert ca.parse_serial("255") == 255
    assert ca.parse_serial("0xff") == 255
    assert ca.parse_serial("00:FF") == 255
    with pytest.raises(argparse.ArgumentTypeError):
        ca.parse_serial("ff")
    with pytest.raises(argparse.ArgumentTypeError):
        ca.parse_thumb("00" * 31)


def test_revoke_by_serial_and_by_thumbprint(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(made.config_path)
    before = _sequence(made)
    serial = _serial(made, "gateway-kex")
    code, out, err = _ca(["revoke", "--config", config, "--serial", hex(serial)], capsys)
    assert code == 0, err
    assert f"serial {serial:x}" in out
    assert _sequence(made) == before + 1
    # Twice: refused, nothing published.
    code, _, err = _ca(["revoke", "--config", config, "--serial", str(serial)], capsys)
    assert code == 1 and "already revoked" in err
    assert _sequence(made) == before + 1
    der = (made.directory / "certs" / "mca-kex.der").read_bytes()
    code, _, err = _ca(["revoke", "--config", config, "--thumb", thumbprint(der).hex()], capsys)
    assert code == 0, err
    assert _sequence(made) == before + 2


def test_revoke_refusals(made: InitResult, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(made.config_path)
    code, _, err = _ca(["revoke", "--config", config, "--thumb", "ab" * 32], capsys)
    assert code == 1 and "no certificate with that thumbprint" in err
    root_serial = str(_serial(made, "brand-root"))
    code, _, err = _ca(["revoke", "--config", config, "--serial", root_serial], capsys)
    assert code == 1 and ROOT_SERIAL_NOTE in err
    code, _, err = _ca(["revoke", "--config", str(made.directory / "nope.toml"), "--serial", "1"],
                       capsys)  # fmt: skip
    assert code == 1 and "cannot open the bank" in err


@pytest.mark.parametrize("role", ["client", "server"])
def test_issue_tls(
    role: str, made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "tls"
    name = "shop-7" if role == "client" else "localhost"
    code, out, err = _ca(
        ["issue-tls", "--config", str(made.config_path), "--role", role, "--name", name,
         "--out", str(out_dir)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("wrote ")
    chain, key = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is required for these tests (Debian package: openssl)")
    purpose = "sslclient" if role == "client" else "sslserver"
    done = subprocess.run(
        [openssl, "verify", "-purpose", purpose, "-CAfile", str(out_dir / "root.pem"),
         "-untrusted", str(chain), str(chain)],
        text=True, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip().endswith(": OK"), done.stdout + done.stderr
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert name in names.get_values_for_type(x509.DNSName)
    # A second issue under the same name does not overwrite the key.
    code, _, err = _ca(
        ["issue-tls", "--config", str(made.config_path), "--role", role, "--name", name,
         "--out", str(out_dir)],
        capsys,
    )  # fmt: skip
    assert code == 1 and "already exists" in err


def test_issue_tls_refuses_a_bad_client_name(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _ca(
        ["issue-tls", "--config", str(made.config_path), "--role", "client", "--name",
         "not a name", "--out", str(tmp_path)],
        capsys,
    )  # fmt: skip
    assert code == 1 and "TLS client names" in err


def test_config_loads(made: InitResult) -> None:
    assert load(made.config_path, env={}).brand_id == "setpay"


@pytest.mark.parametrize("name", ["../escaped", "a/b", "*.example.com", "not a name", "x-"])
def test_issue_tls_refuses_a_server_name_that_is_no_dns_name(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # The name is both the certificate's DNS name and the file name: "../escaped" wrote
    # its private key outside --out, and a wildcard was certified as it was given.
    out_dir = tmp_path / "out"
    code, out, err = _ca(
        ["issue-tls", "--config", str(made.config_path), "--role", "server", "--name", name,
         "--out", str(out_dir)],
        capsys,
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "TLS server names are DNS names" in err
    assert not list(tmp_path.rglob("*.key"))


def test_issue_tls_refuses_a_transport_key_its_certificate_does_not_certify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A tls-ca key generated again (version 2) is the newest, but tls-ca.der certifies
    # version 1: what it signed would not verify under root.pem.
    from gateway.bank_pki import TLS_CA_LABEL, bank_keys_uri
    from hsm.base import KeyAlgorithm, KeyUsage
    from hsm.uri import open_backend

    result = init_bank(tmp_path / "bank", env={})
    backend = open_backend(bank_keys_uri(load(result.config_path, env={})))
    try:
        backend.generate(TLS_CA_LABEL, KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    finally:
        backend.close()
    out_dir = tmp_path / "tls"
    code, _, err = _ca(
        ["issue-tls", "--config", str(result.config_path), "--role", "server", "--name",
         "localhost", "--out", str(out_dir)],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert f"key '{TLS_CA_LABEL}' v2 is not the key {TLS_CA_LABEL}.der certifies" in err
    assert not (out_dir / "localhost.key").exists()
