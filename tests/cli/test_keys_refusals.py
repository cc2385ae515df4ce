"""``setpay keys``: bad input is refused with a clear error and changes nothing: no
keystore made on a mistyped path, no traceback for a PEM the library cannot read, and
none of the bank's keys deleted without its configuration."""

from __future__ import annotations

import argparse
import datetime
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cli import keys
from gateway.bank_pki import ALL_LABELS
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.uri import PASSPHRASE_ENV, open_backend
from tests.hsm.testbed import run_tool

PASSPHRASE = "refusals keystore passphrase"


def _keys(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    keys.add_parser(parser.add_subparsers(dest="command", required=True))
    code = keys.run(parser.parse_args(["keys", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)


def _labels(uri: str, capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str]]:
    code, out, _ = _keys(["list", "--keys", uri], capsys)
    assert code == 0
    return [(line.split()[0], line.split()[1]) for line in out.splitlines()[1:]]


def test_the_bank_labels_are_every_label_the_bank_holds() -> None:
    assert set(ALL_LABELS) == keys.BANK_LABELS


@pytest.mark.parametrize(
    "label", ["gateway-token", "brand-root", "mca", "pca-kex", "tls-ca", "cca", "cca-kex"]
)
@pytest.mark.usefixtures("passphrase")
def test_every_key_of_the_bank_needs_its_configuration_to_be_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str
) -> None:
    """The old code guarded gateway-sig and gateway-kex only: ``gateway-token``, which the
    ledger's keys are sealed to, went at once, while the bank ran, with no lock taken."""
    uri = f"soft:{tmp_path / 'keystore'}"
    # Made through the backend, as setpay init makes it: ``keys generate`` makes no
    # version of the token-sealing key.
    backend = open_backend(uri)
    try:
        backend.generate(label, KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    finally:
        backend.close()
    argv = ["delete", "--keys", uri, "--label", label, "--all-versions"]
    code, out, err = _keys(argv, capsys)
    assert (code, out) == (1, "")
    assert f"{label!r} is the bank's own key: pass --config" in err
    assert _labels(uri, capsys) == [(label, "1")]
    # A backend no bank uses (a demo's, left behind): said so, it goes.
    code, out, _ = _keys([*argv, "--no-bank"], capsys)
    assert (code, out) == (0, f"deleted {label!r} (every version)\n")
    assert _labels(uri, capsys) == []


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["delete", "--label", "merchant-sig", "--version", "1"],
        ["adopt", "--id", "01", "--label", "x", "--usage", "signature"],
    ],
)
@pytest.mark.usefixtures("passphrase")
def test_a_command_that_adds_no_key_makes_no_keystore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """The old code made a keystore (directory, keystore.json under the passphrase given)
    at a mistyped path, then listed nothing or refused: a typo looked like an empty bank."""
    missing = tmp_path / "keystroe"
    code, out, err = _keys([*command, "--keys", f"soft:{missing}"], capsys)
    assert (code, out) == (1, "")
    assert "setpay keys" in err
    assert not missing.exists()
    # A directory with no keystore in it (made by hand, or a parent) stays as it is.
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    code, _, err = _keys([*command, "--keys", f"soft:{empty}"], capsys)
    assert code == 1
    assert os.listdir(empty) == []


@pytest.mark.usefixtures("passphrase")
def test_list_and_delete_say_no_keystore_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "keystroe"
    code, _, err = _keys(["list", "--keys", f"soft:{missing}"], capsys)
    assert (code, err) == (
        1,
        f"setpay keys: cannot open soft:{missing}: no keystore at {missing}: check the path\n",
    )
    code, _, err = _keys(
        ["adopt", "--keys", f"soft:{missing}", "--id", "01", "--label", "x", "--usage",
         "signature"],
        capsys,
    )  # fmt: skip
    assert (code, err) == (1, "setpay keys adopt: adopt works only on pkcs11: key URIs\n")
    assert not missing.exists()


def _pem(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.usefixtures("passphrase")
def test_a_refused_key_makes_no_keystore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old code opened (so made) the keystore first, then refused the input."""
    p256 = ec.generate_private_key(ec.SECP256R1())
    pems = {
        "empty": b"",
        "garbage": os.urandom(200),
        "public key": p256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "certificate": _certificate_pem(p256),
        "rsa-1024": _private_pem(rsa.generate_private_key(65537, 1024)),
        "p-384": _private_pem(ec.generate_private_key(ec.SECP384R1())),
    }
    missing = tmp_path / "new-keystore"
    uri = f"soft:{missing}"
    for name, data in pems.items():
        path = _pem(tmp_path, f"{name}.pem", data)
        argv = ["import", "--keys", uri, "--label", "k", "--usage", "signature", "--pem", path]
        code, out, err = _keys(argv, capsys)
        assert (code, out) == (1, ""), name
        assert err.startswith("setpay keys import: "), name
        assert not missing.exists(), name
    good = _pem(tmp_path, "p256.pem", _private_pem(p256))
    refused = [
        ["import", "--label", "k/../x", "--usage", "signature", "--pem", good],
        ["import", "--label", "k", "--usage", "key-exchange", "--pem", good,
         "--pem-passphrase-file", str(tmp_path / "no-such-file")],
        ["generate", "--label", "schlüssel", "--usage", "signature", "--algorithm", "ec-p256"],
        ["generate", "--label", "k", "--usage", "key-exchange", "--algorithm", "ed25519"],
    ]  # fmt: skip
    for argv in refused:
        code, _, err = _keys([argv[0], "--keys", uri, *argv[1:]], capsys)
        assert code == 1, argv
        assert not missing.exists(), argv
    # Good input still makes the keystore, 0700 and the key in it.
    argv = ["import", "--keys", uri, "--label", "k", "--usage", "signature", "--pem", good]
    assert _keys(argv, capsys)[0] == 0
    assert stat.S_IMODE(missing.stat().st_mode) == 0o700
    assert _labels(uri, capsys) == [("k", "1")]


@pytest.mark.integration
@pytest.mark.usefixtures("passphrase")
@pytest.mark.parametrize("curve", ["sect163k1", "prime192v2"])
def test_a_key_on_a_curve_the_library_cannot_read_is_a_clear_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], curve: str
) -> None:
    """The old code let cryptography's UnsupportedAlgorithm out: a traceback (exit 1 only
    as Python's), and the keystore made before it."""
    pem = tmp_path / f"{curve}.pem"
    run_tool("openssl", "ecparam", "-genkey", "-name", curve, "-noout", "-out", str(pem))
    keystore = tmp_path / "keystore"
    argv = ["import", "--keys", f"soft:{keystore}", "--label", "k", "--usage", "signature",
            "--pem", str(pem)]  # fmt: skip
    code, out, err = _keys(argv, capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"setpay keys import: cannot load a private key from {pem}: its key type or curve "
        "is not one setpay reads (P-256, Ed25519, RSA-2048 or RSA-3072)\n"
    )
    assert not keystore.exists()


@pytest.mark.parametrize("given", ["", "xyz", "0x01"])
def test_adopt_takes_a_cka_id_of_one_byte_or_more_in_hex(
    capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """The old code took an empty --id (``bytes.fromhex("")``) as the id of a key."""
    with pytest.raises(SystemExit) as usage:
        _keys(["adopt", "--keys", "soft:ephemeral", "--id", given, "--label", "x", "--usage",
               "signature"], capsys)  # fmt: skip
    assert usage.value.code == 2
    assert "argument --id: must be a CKA_ID" in capsys.readouterr().err


def test_a_card_number_given_as_the_id_is_not_repeated(capsys: pytest.CaptureFixture[str]) -> None:
    pan_like = "4" + "1" * 15 + "x"
    with pytest.raises(SystemExit):
        _keys(["adopt", "--keys", "soft:ephemeral", "--id", pan_like, "--label", "x", "--usage",
               "signature"], capsys)  # fmt: skip
    err = capsys.readouterr().err
    assert "1" * 15 not in err
    assert "not repeated" in err
