"""``setpay keys``: generate, import, list, delete and adopt through the command line."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cli import keys
from hsm.software import SoftwareBackend
from hsm.uri import PASSPHRASE_ENV
from tests.hsm.testbed import SOFTHSM_MODULE, SoftToken, session_softhsm

PASSPHRASE = "cli keystore passphrase"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="setpay")
    keys.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _keys(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = _parse(["keys", *argv])
    assert args.handler is keys.run
    code = keys.run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def keystore_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A keystore URI whose passphrase comes from the default environment variable."""
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    return f"soft:{tmp_path / 'keystore'}"


def test_generate_list_delete(keystore_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _keys(
        ["generate", "--keys", keystore_uri, "--label", "gw-kex", "--usage", "key-exchange",
         "--algorithm", "ec-p256"],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert out.startswith("generated gw-kex v1 (key-exchange, ec-p256, kem p256-hkdf-sha256)")
    code, out, _ = _keys(
        ["generate", "--keys", keystore_uri, "--label", "gw-sig", "--usage", "signature",
         "--algorithm", "ed25519"],
        capsys,
    )  # fmt: skip
    assert code == 0
    code, out, _ = _keys(["list", "--keys", keystore_uri], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["LABEL", "VERSION", "USAGE", "ALGORITHM", "KEM"]
    assert lines[0].endswith("SHA-256 OF PUBLIC KEY")
    assert [line.split()[:5] for line in lines[1:]] == [
        ["gw-kex", "1", "key-exchange", "ec-p256", "p256-hkdf-sha256"],
        ["gw-sig", "1", "signature", "ed25519", "-"],
    ]
    code, out, _ = _keys(
        ["delete", "--keys", keystore_uri, "--label", "gw-kex", "--all-versions"], capsys
    )
    assert (code, out) == (0, "deleted 'gw-kex' (every version)\n")
    code, out, _ = _keys(["list", "--keys", keystore_uri], capsys)
    assert [line.split()[0] for line in out.splitlines()] == ["LABEL", "gw-sig"]


def test_delete_one_version(keystore_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        _keys(
            ["generate", "--keys", keystore_uri, "--label", "ca", "--usage", "ca-signing",
             "--algorithm", "ec-p256"],
            capsys,
        )  # fmt: skip
    code, out, _ = _keys(
        ["delete", "--keys", keystore_uri, "--label", "ca", "--version", "2"], capsys
    )
    assert (code, out) == (0, "deleted 'ca' (v2)\n")
    code, out, err = _keys(
        ["delete", "--keys", keystore_uri, "--label", "ca", "--version", "2"], capsys
    )
    assert code == 1
    assert err == "setpay keys delete: no key 'ca' (v2) in keystore\n"


def test_import_plain_and_encrypted_pem(
    keystore_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = ec.generate_private_key(ec.SECP256R1())
    plain_file = tmp_path / "plain.pem"
    plain_file.write_bytes(
        plain.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    code, out, _ = _keys(
        ["import", "--keys", keystore_uri, "--label", "merchant-sig", "--usage", "signature",
         "--pem", str(plain_file)],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert out.startswith("imported merchant-sig v1 (signature, ec-p256)")
    secret = ed25519.Ed25519PrivateKey.generate()
    encrypted_file = tmp_path / "encrypted.pem"
    encrypted_file.write_bytes(
        secret.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pem passphrase"),
        )
    )
    passphrase_file = tmp_path / "pem.pass"
    passphrase_file.write_text("pem passphrase\n")
    passphrase_file.chmod(0o600)
    code, out, _ = _keys(
        ["import", "--keys", keystore_uri, "--label", "merchant-sig", "--usage", "signature",
         "--pem", str(encrypted_file), "--pem-passphrase-file", str(passphrase_file)],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert out.startswith("imported merchant-sig v2 (signature, ed25519)")
    backend = SoftwareBackend.open(keystore_uri.removeprefix("soft:"), PASSPHRASE)
    assert backend.get("merchant-sig", 1).public_key == plain.public_key()
    assert backend.get("merchant-sig", 2).public_key == secret.public_key()


def test_import_refusals(
    keystore_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encrypted_file = tmp_path / "encrypted.pem"
    encrypted_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right one"),
        )
    )
    wrong_file = tmp_path / "wrong.pass"
    wrong_file.write_text("wrong one")
    wrong_file.chmod(0o600)
    base = ["import", "--keys", keystore_uri, "--label", "k", "--usage", "signature"]
    code, _, err = _keys([*base, "--pem", str(encrypted_file)], capsys)
    assert code == 1
    assert "encrypted without --pem-passphrase-file, or wrong passphrase" in err
    code, _, err = _keys(
        [*base, "--pem", str(encrypted_file), "--pem-passphrase-file", str(wrong_file)], capsys
    )
    assert code == 1
    assert "wrong one" not in err
    wrong_file.chmod(0o644)
    code, _, err = _keys(
        [*base, "--pem", str(encrypted_file), "--pem-passphrase-file", str(wrong_file)], capsys
    )
    assert code == 1
    assert "accessible to group or others" in err
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    code, _, err = _keys([*base, "--pem", str(p384)], capsys)
    assert (code, err) == (1, "setpay keys import: EC curve secp384r1 is not allowed: use P-256\n")


def test_backend_errors_exit_1_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = _keys(["list", "--keys", "pkcs11:module=/x.so;token=t;pin-value=778899"], capsys)
    assert code == 1
    assert "pin-value=***" in err
    assert "778899" not in err
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    code, _, err = _keys(["list", "--keys", f"soft:{tmp_path / 'ks'}"], capsys)
    assert (code, err.strip().endswith(f"{PASSPHRASE_ENV} is not set")) == (1, True)
    code, _, err = _keys(
        ["generate", "--keys", "soft:ephemeral", "--label", "ed", "--usage", "key-exchange",
         "--algorithm", "ed25519"],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert "ed25519 keys cannot have usage key-exchange" in err
    code, _, err = _keys(
        ["adopt", "--keys", "soft:ephemeral", "--id", "01", "--label", "x", "--usage", "signature"],
        capsys,
    )
    assert (code, err) == (1, "setpay keys adopt: adopt works only on pkcs11: key URIs\n")


def test_usage_errors_are_argparse_errors() -> None:
    with pytest.raises(SystemExit) as caught:
        _parse(["keys", "generate", "--keys", "soft:ephemeral", "--label", "k",
                "--usage", "everything", "--algorithm", "ec-p256"])  # fmt: skip
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        _parse(["keys", "list"])


@pytest.fixture
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    """A fresh SoftHSM token (same session configuration as tests/hsm)."""
    made = session_softhsm(tmp_path_factory).init_token()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


@pytest.mark.integration
def test_token_keys_through_the_cli(token: SoftToken, capsys: pytest.CaptureFixture[str]) -> None:
    uri = token.uri()
    code, out, _ = _keys(
        ["generate", "--keys", uri, "--label", "gw-kex", "--usage", "key-exchange",
         "--algorithm", "rsa-2048"],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert out.startswith("generated gw-kex v1 (key-exchange, rsa-2048, kem rsa-oaep-sha1)")
    if shutil.which("pkcs11-tool") is None:
        pytest.fail("pkcs11-tool is not installed (apt-get install opensc)")
    subprocess.run(
        ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label, "--login",
         "--pin", token.pin, "--keypairgen", "--key-type", "rsa:2048", "--id", "c0ffee",
         "--label", "made-elsewhere", "--usage-sign"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    code, out, _ = _keys(
        ["adopt", "--keys", uri, "--id", "c0ffee", "--label", "ca", "--usage", "ca-signing"],
        capsys,
    )
    assert (code, out.split(" public key")[0]) == (0, "adopted ca v1 (ca-signing, rsa-2048)")
    code, out, _ = _keys(["list", "--keys", uri], capsys)
    assert [line.split()[:4] for line in out.splitlines()[1:]] == [
        ["ca", "1", "ca-signing", "rsa-2048"],
        ["gw-kex", "1", "key-exchange", "rsa-2048"],
    ]
    assert token.pin not in out
