"""A client's key URI is read relative to its directory, whatever the current one: a
keystore directory that merely starts like ``ephemeral``, and a ``pkcs11:`` URI's
``pin-source=file:`` PIN file, as a ``soft:`` one's already was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from clients.identity import resolve_key_uri
from clients.wallet.config import load
from hsm.base import KeyUsage
from hsm.uri import open_backend
from setcore.profiles import EC
from tests.hsm.testbed import SOFTHSM_MODULE, session_softhsm

PASSPHRASE = "keystore passphrase for this test"


def _secret_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def _wallet(tmp_path: Path, keys: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wallet directory whose keys are ``keys``; the current directory is another one."""
    directory = tmp_path / "wallet"
    directory.mkdir()
    (directory / "wallet.toml").write_text(f'[wallet]\nkeys = "{keys}"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return directory


def _generate(uri: str) -> None:
    backend = open_backend(uri)
    try:
        backend.generate("cardholder-sig", KeyUsage.SIGNATURE, EC.signature_key)
    finally:
        backend.close()


def test_a_keystore_named_ephemeral_something_is_in_the_wallet_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its directory and its passphrase file were read from the current directory."""
    directory = _wallet(tmp_path, "soft:ephemeral-keys;pin-source=file:keys.pass", monkeypatch)
    _secret_file(directory / "keys.pass", PASSPHRASE)
    _generate(load(directory).keys_uri())
    assert (directory / "ephemeral-keys").is_dir()
    assert not (tmp_path / "elsewhere" / "ephemeral-keys").exists()


@pytest.mark.integration
@pytest.mark.parametrize("separator", [";", "?"])
def test_a_token_pin_file_is_read_from_the_wallet_directory(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    separator: str,
) -> None:
    """Relative, like every other path of the file: the PIN file beside wallet.toml opens
    the token from any directory, in the URI's path or its query part (RFC 7512)."""
    token = session_softhsm(tmp_path_factory).init_token()
    uri = f"pkcs11:module={SOFTHSM_MODULE};token={token.label}{separator}pin-source=file:t.pin"
    directory = _wallet(tmp_path, uri, monkeypatch)
    shutil.copy(token.pin_file, directory / "t.pin")
    _generate(load(directory).keys_uri())
    backend = open_backend(token.uri())
    try:
        assert [key.label for key in backend.list_keys()] == ["cardholder-sig"]
    finally:
        backend.close()


@pytest.mark.parametrize(
    "uri",
    [
        "soft:",
        "pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=t;pin-source=env:TOKEN_PIN",
        "pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=t?pin-source=file:/etc/pin",
    ],
)
def test_what_names_no_relative_path_is_left_for_the_parser(uri: str, tmp_path: Path) -> None:
    """``soft:`` was made the client's directory itself, a keystore nobody asked for."""
    assert resolve_key_uri(uri, tmp_path) == uri
