"""``setpay keys upgrade-keystore``: the one way a keystore an earlier setpay wrote opens again.

An open refuses such a keystore (its key metadata has no MAC, and an automatic upgrade
would MAC whatever an old keystore.json put back found): the command shows every key
version, as ``keys list`` does, warns of a replay, checks each against its certificate,
and writes nothing unless ``--yes``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cli import keys
from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from hsm.uri import PASSPHRASE_ENV
from setcore.pki.issuance import key_usage
from tests.hsm.legacy_keystore import legacy_meta, make_legacy

PASSPHRASE = "cli keystore passphrase"
COMMAND = "setpay keys upgrade-keystore"


def _keys(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    keys.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", *argv])
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _files(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.fixture
def old_keystore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A keystore as an earlier setpay left it: a key-exchange key and a signing key."""
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    directory = tmp_path / "keystore"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.generate("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
    backend.close()
    make_legacy(directory, PASSPHRASE)
    return directory


def test_an_old_keystore_is_refused_then_upgraded_then_listed(
    old_keystore: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"soft:{old_keystore}"
    files = _files(old_keystore)
    for argv in (["list"], ["delete", "--label", "gw-kex", "--all-versions"]):
        code, out, err = _keys([*argv, "--keys", uri], capsys)
        assert (code, out) == (1, "")
        assert (
            f"keystore {old_keystore} was written by an earlier setpay: its key metadata is not "
            "authenticated; check it and upgrade it once with `setpay keys upgrade-keystore "
            "--keys URI` (a read-only copy must first be copied somewhere writable)\n"
        ) in err
    assert _files(old_keystore) == files

    # Without --yes, a dry run: shown, nothing written, still refused by every command.
    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
    assert _files(old_keystore) == files
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"keystore {old_keystore}: the key metadata to authenticate:"
    assert lines[-2:] == [
        "no certificate to check against: gw-kex v1, gw-sig v1",
        "nothing written: run again with --yes to authenticate these",
    ]
    shown = lines[:-1]
    assert _keys(["list", "--keys", uri], capsys)[0] == 1

    code, out, err = _keys(["upgrade-keystore", "--keys", uri, "--yes"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:-1] == shown  # what the dry run showed is what is authenticated
    assert lines[-1] == (
        f"upgraded keystore {old_keystore}: the metadata of 2 key version(s) is "
        "authenticated (MAC under the passphrase) and keystore.json is format 3; an earlier "
        "setpay no longer opens it"
    )
    table = lines[1:-2]
    # The very table `keys list` prints, now that the keystore opens.
    code, listed, _ = _keys(["list", "--keys", uri], capsys)
    assert code == 0
    assert table == listed.splitlines()
    assert [line.split()[:5] for line in table[1:]] == [
        ["gw-kex", "1", "key-exchange", "ec-p256", "p256-hkdf-sha256"],
        ["gw-sig", "1", "signature", "ed25519", "-"],
    ]
    code, out, err = _keys(["upgrade-keystore", "--keys", uri, "--yes"], capsys)
    assert (code, out, err) == (
        0,
        f"keystore {old_keystore} is already upgraded (format 3): nothing to do\n",
        "",
    )


def test_a_pre_upgrade_header_put_back_is_refused_and_the_upgrade_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    directory = tmp_path / "keystore"
    uri = f"soft:{directory}"
    # A keystore as an upgrade leaves it (every N.json with its MAC, format 3), and the
    # keystore.json of a backup taken before that upgrade (same salt, old format).
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.generate("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
    backend.close()
    shutil.copytree(directory, tmp_path / "backup")
    make_legacy(tmp_path / "backup", PASSPHRASE)
    saved_header = (tmp_path / "backup" / "keystore.json").read_bytes()
    # Someone who can write the directory makes the key-exchange key sign, MAC dropped,
    # and puts back the keystore.json from before the upgrade.
    path = directory / "keys" / "gw-kex" / "1.json"
    path.write_text(
        legacy_meta({**json.loads(path.read_text()), "usage": "signature", "kem": None})
    )
    (directory / "keystore.json").write_bytes(saved_header)
    code, _, err = _keys(["list", "--keys", uri], capsys)
    assert code == 1
    assert "was written by an earlier setpay" in err
    assert "mac" not in json.loads(path.read_text())

    files = _files(directory)
    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
    assert (code, _files(directory)) == (0, files)
    assert err == (
        f"{COMMAND}: WARNING: keystore.json is older than its entries (an upgrade cut "
        "short, or restored from a pre-upgrade copy?). These already carry a valid MAC: "
        "gw-sig v1. Check every key below before using the keystore.\n"
    )
    # What the key now says is shown, for the operator to see it is not what it was.
    assert out.splitlines()[2].split()[:3] == ["gw-kex", "1", "signature"]


def test_a_wrong_passphrase_upgrades_nothing(
    old_keystore: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "not the passphrase")
    files = _files(old_keystore)
    for yes in ([], ["--yes"]):
        code, out, err = _keys(["upgrade-keystore", "--keys", f"soft:{old_keystore}", *yes], capsys)
        assert (code, out) == (1, "")
        assert err == f"{COMMAND}: wrong passphrase for keystore {old_keystore}\n"
        assert _files(old_keystore) == files


@pytest.mark.parametrize(
    "uri", ["soft:ephemeral", "pkcs11:module=/x.so;token=t;pin-source=env:TOKEN_PIN"]
)
def test_only_a_keystore_directory_is_upgraded(
    uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"{COMMAND}: ")
    assert err.endswith("is not a software keystore (soft:DIR): only those are upgraded\n")


def test_a_missing_keystore_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    directory = tmp_path / "nothing-here"
    directory.mkdir(mode=0o700)
    code, _, err = _keys(["upgrade-keystore", "--keys", f"soft:{directory}", "--yes"], capsys)
    assert code == 1
    assert err == f"{COMMAND}: {directory} is not a setpay keystore (no keystore.json)\n"
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize("yes", [[], ["--yes"]])
def test_a_mistyped_keystore_path_is_not_created(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    yes: list[str],
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    typo = tmp_path / "keystroe"
    code, out, err = _keys(["upgrade-keystore", "--keys", f"soft:{typo}", *yes], capsys)
    assert (code, out) == (1, "")
    assert err == f"{COMMAND}: {typo} is not a setpay keystore (no keystore.json)\n"
    assert list(tmp_path.iterdir()) == []


def test_a_signing_key_relabelled_a_cas_with_every_mac_stripped_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The review's demo: no MAC left to warn of a replay; the certificate still tells.
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    directory = tmp_path / "keystore"
    uri = f"soft:{directory}"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    signing = backend.generate("gw-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.store_certificate(signing, _certificate(signing, key_usage(signature=True)))
    exchange = backend.generate("gw-kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.store_certificate(exchange, _certificate(exchange, key_usage(agree=True)))
    backend.generate("gw-token", KeyUsage.TOKEN_SEALING, KeyAlgorithm.EC_P256)
    backend.close()
    shutil.copytree(directory, tmp_path / "as-made")
    make_legacy(tmp_path / "as-made", PASSPHRASE)
    make_legacy(directory, PASSPHRASE)
    path = directory / "keys" / "gw-sig" / "1.json"
    path.write_text(legacy_meta({**json.loads(path.read_text()), "usage": "ca-signing"}))
    files = _files(directory)
    for yes in ([], ["--yes"]):
        code, out, err = _keys(["upgrade-keystore", "--keys", uri, *yes], capsys)
        assert _files(directory) == files
        assert (code, out) == (1, "")
        assert err == (
            f"{COMMAND}: the key metadata disagrees with the certificate beside it: key "
            "'gw-sig' v1: the metadata says ca-signing, its certificate's keyUsage is a "
            "signature key's. Nothing written: restore those versions' files from a backup "
            "(or remove them by hand), then run the upgrade again\n"
        )
    # As it was made, the same keystore is shown checked, and the token key named.
    code, out, err = _keys(["upgrade-keystore", "--keys", f"soft:{tmp_path / 'as-made'}"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[-3:] == [
        "agrees with its certificate (public key, key usage): gw-kex v1, gw-sig v1",
        "no certificate to check against: gw-token v1",
        "nothing written: run again with --yes to authenticate these",
    ]


def _certificate(key: KeyHandle, usage: x509.KeyUsage) -> bytes:
    """A certificate of ``key`` with the keyUsage setpay's CAs give (``usage``)."""
    issuer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keystore test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(usage, critical=True).sign(issuer, hashes.SHA256())
    )  # fmt: skip
    return certificate.public_bytes(serialization.Encoding.DER)
