"""A client's ``soft:`` key URI is read relative to its directory, passphrase file included."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.identity import resolve_key_uri
from clients.wallet.config import load
from hsm.base import KeyUsage
from hsm.uri import SoftwareKeyURI, open_backend, parse_key_uri
from setcore.profiles import EC

PASSPHRASE = "keystore passphrase for this test"


def _parsed(uri: str) -> SoftwareKeyURI:
    parsed = parse_key_uri(uri)
    assert isinstance(parsed, SoftwareKeyURI)
    return parsed


def test_relative_directory_and_pin_file_resolve_against_the_base(tmp_path: Path) -> None:
    base = tmp_path / "a shop%"  # a space and a percent sign survive the URI's %-encoding
    parsed = _parsed(resolve_key_uri("soft:keys;pin-source=file:keys.pass", base))
    assert parsed.directory == str(base / "keys")
    assert parsed.pin_source.describe() == f"file:{base / 'keys.pass'}"


@pytest.mark.parametrize(
    "uri",
    [
        "soft:/etc/setpay/keys;pin-source=file:/etc/setpay/keys.pass",
        "soft:ephemeral",
        "pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=t;pin-source=file:/etc/pin",
    ],
)
def test_absolute_paths_and_other_uris_are_left_alone(uri: str, tmp_path: Path) -> None:
    assert resolve_key_uri(uri, tmp_path) == uri


def test_pin_source_env_is_left_alone(tmp_path: Path) -> None:
    parsed = _parsed(resolve_key_uri("soft:keys;pin-source=env:MY_PASSPHRASE", tmp_path))
    assert parsed.directory == str(tmp_path / "keys")
    assert parsed.pin_source.describe() == "env:MY_PASSPHRASE"


def test_wallet_keys_open_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet_dir = tmp_path / "wallet"
    wallet_dir.mkdir()
    (wallet_dir / "wallet.toml").write_text(
        '[wallet]\nkeys = "soft:keys;pin-source=file:keys.pass"\n'
    )
    pin = wallet_dir / "keys.pass"
    pin.write_text(PASSPHRASE + "\n")
    pin.chmod(0o600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    backend = open_backend(load(Path("..") / "wallet").keys_uri())
    try:
        backend.generate("cardholder-sig", KeyUsage.SIGNATURE, EC.signature_key)
    finally:
        backend.close()
    assert (wallet_dir / "keys").is_dir() and not (elsewhere / "keys").exists()
