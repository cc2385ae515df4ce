"""``setpay keys upgrade-keystore``: the one way a keystore an earlier setpay wrote opens again.

An open refuses such a keystore (its key metadata has no MAC, and an automatic upgrade
would MAC whatever an old keystore.json put back found): the command shows every key
version, as ``keys list`` does, then authenticates them, and warns of a replay.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from cli import keys
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.software import SoftwareBackend
from hsm.uri import PASSPHRASE_ENV
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

    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"keystore {old_keystore}: the key metadata to authenticate:"
    assert lines[-1] == (
        f"upgraded keystore {old_keystore}: the metadata of 2 key version(s) is "
        "authenticated (MAC under the passphrase) and keystore.json is format 3; an earlier "
        "setpay no longer opens it"
    )
    table = lines[1:-1]
    # The very table `keys list` prints, now that the keystore opens.
    code, listed, _ = _keys(["list", "--keys", uri], capsys)
    assert code == 0
    assert table == listed.splitlines()
    assert [line.split()[:5] for line in table[1:]] == [
        ["gw-kex", "1", "key-exchange", "ec-p256", "p256-hkdf-sha256"],
        ["gw-sig", "1", "signature", "ed25519", "-"],
    ]
    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
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

    code, out, err = _keys(["upgrade-keystore", "--keys", uri], capsys)
    assert code == 0
    assert err == (
        f"{COMMAND}: WARNING: keystore.json is older than its entries: restored from a "
        "pre-upgrade copy? These already carry a valid MAC: gw-sig v1. Check every key "
        "below before using the keystore.\n"
    )
    # What the key now says is shown, for the operator to see it is not what it was.
    assert out.splitlines()[2].split()[:3] == ["gw-kex", "1", "signature"]


def test_a_wrong_passphrase_upgrades_nothing(
    old_keystore: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "not the passphrase")
    files = _files(old_keystore)
    code, out, err = _keys(["upgrade-keystore", "--keys", f"soft:{old_keystore}"], capsys)
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
    code, _, err = _keys(["upgrade-keystore", "--keys", f"soft:{directory}"], capsys)
    assert code == 1
    assert err == f"{COMMAND}: {directory} is not a setpay keystore (no keystore.json)\n"
    assert list(directory.iterdir()) == []
