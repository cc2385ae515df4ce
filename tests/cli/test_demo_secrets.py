"""The demo's passphrase files and TLS keys are created readable by their owner only:
never written first and chmod-ed after, never written through a file already there."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.demo import Demo
from cli.story import Story

TLS = ("root.pem", "merchant-client.pem", "merchant-client.key")


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    """A demo whose bank left its TLS files (their content does not matter here)."""
    (tmp_path / "bank" / "tls").mkdir(parents=True)
    for name in TLS:
        (tmp_path / "bank" / "tls" / name).write_bytes(f"{name} bytes\n".encode())
    return Demo(tmp_path, "ec", None, Story(json_mode=True))


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask: files are created readable by all unless asked otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_secrets_are_created_private(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    # A chmod after the write is what left the window: without it the files must still
    # be private, which they are only if they were created so.
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    directory = demo._party_dir("merchant", TLS)
    assert _mode(directory / "keys.pass") == 0o600
    assert len((directory / "keys.pass").read_text()) >= 32
    key = directory / "tls" / "merchant-client.key"
    assert _mode(key) == 0o600 and key.read_bytes() == b"merchant-client.key bytes\n"
    assert _mode(directory / "tls" / "root.pem") == 0o644  # a certificate is public


def test_each_party_has_a_keystore_passphrase_of_its_own(demo: Demo) -> None:
    merchant = demo._party_dir("merchant", TLS)
    wallet = demo._party_dir("wallet", ("root.pem",))
    passphrases = {(party / "keys.pass").read_text() for party in (merchant, wallet)}
    assert len(passphrases | {demo.card_passphrase}) == 3


def test_a_file_already_in_place_is_not_written_through(demo: Demo, tmp_path: Path) -> None:
    # A link planted where the passphrase goes would otherwise receive it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("")
    (tmp_path / "wallet").mkdir()
    (tmp_path / "wallet" / "keys.pass").symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        demo._party_dir("wallet", ("root.pem",))
    assert elsewhere.read_text() == ""
