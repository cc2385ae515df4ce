"""``setpay health``: options that do not fit are refused before gRPC sees them."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cli.main import main

REPO = Path(__file__).resolve().parents[2]
# Nothing listens on port 1 of the loopback; the probe must fail before dialing anyway.
NOWHERE = "127.0.0.1:1"
# The command refuses its options at once; this only bounds a hang.
RUN_SECONDS = 30


def _pem_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "health-test")])
    start = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("given", ["--cert", "--key"])
def test_cert_and_key_go_together(tmp_path: Path, given: str) -> None:
    """In a process of its own: gRPC used to abort it (SIGABRT) on a certificate alone."""
    cert, key = _pem_files(tmp_path)
    argv = ["health", "--target", NOWHERE, "--ca", str(cert),
            given, str(cert if given == "--cert" else key)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *argv], cwd=REPO, capture_output=True, text=True,
        timeout=RUN_SECONDS, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == "setpay health: --cert and --key go together (mutual TLS)\n"


@pytest.mark.parametrize("missing", ["--ca", "--cert", "--key"])
def test_an_unreadable_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    cert, key = _pem_files(tmp_path)
    files = {"--ca": cert, "--cert": cert, "--key": key}
    files[missing] = tmp_path / "no-such.pem"
    argv = ["health", "--target", NOWHERE]
    for option, path in files.items():
        argv += [option, str(path)]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err == f"setpay health: cannot read {tmp_path / 'no-such.pem'}: No such file or directory\n"
    )


def test_a_ca_that_is_not_pem_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DER root (the bank's brand-root.der) used to fail every handshake, said only as
    UNAVAILABLE with gRPC's own log lines."""
    cert, _ = _pem_files(tmp_path)
    der = tmp_path / "root.der"
    der.write_bytes(x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    ))  # fmt: skip
    assert main(["health", "--target", NOWHERE, "--ca", str(der)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"--ca {der} holds no PEM certificate" in err
