"""The wallet's sealed card file: AES-256-GCM under a scrypt key, mode 0600, no PAN in clear."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from clients.errors import VaultError
from clients.wallet.vault import (
    PASSPHRASE_ENV,
    SCRYPT_N,
    CardSecrets,
    open_vault,
    passphrase_source,
    read_passphrase,
    seal,
)
from setcore.pan import PAN
from tests.cards import VISA
from tests.clients.pan_scan import pan_like_runs

TEST_PAN = VISA
PASSPHRASE = "correct horse battery staple"


def _secrets() -> CardSecrets:
    return CardSecrets(PAN(TEST_PAN), "203012", b"c" * 32, b"p" * 32)


def test_round_trip_and_file_protection(tmp_path: Path) -> None:
    path = tmp_path / "card.sealed"
    seal(path, _secrets(), PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    opened = open_vault(path, PASSPHRASE)
    assert opened.pan.reveal() == TEST_PAN
    assert opened.expiry == "203012"
    assert opened.card_secret == b"c" * 32 and opened.pan_secret == b"p" * 32
    data = path.read_bytes()
    assert pan_like_runs(data) == []
    assert b"4111" not in data
    assert json.loads(data)["kdf"]["n"] == SCRYPT_N


def test_each_write_uses_a_fresh_salt_and_nonce(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    seal(first, _secrets(), PASSPHRASE)
    seal(second, _secrets(), PASSPHRASE)
    a, b = json.loads(first.read_bytes()), json.loads(second.read_bytes())
    assert a["kdf"]["salt"] != b["kdf"]["salt"] and a["nonce"] != b["nonce"]


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "card.sealed"
    seal(path, _secrets(), PASSPHRASE)
    with pytest.raises(VaultError, match="wrong wallet passphrase"):
        open_vault(path, "not it")


def test_tampered_file(tmp_path: Path) -> None:
    path = tmp_path / "card.sealed"
    seal(path, _secrets(), PASSPHRASE)
    sealed = json.loads(path.read_bytes())
    raw = bytearray(sealed["ciphertext"].encode())
    raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
    sealed["ciphertext"] = raw.decode()
    path.write_text(json.dumps(sealed))
    with pytest.raises(VaultError, match="altered"):
        open_vault(path, PASSPHRASE)


def test_weakened_kdf_refused(tmp_path: Path) -> None:
    path = tmp_path / "card.sealed"
    seal(path, _secrets(), PASSPHRASE)
    sealed = json.loads(path.read_bytes())
    sealed["kdf"]["n"] = 2
    path.write_text(json.dumps(sealed))
    with pytest.raises(VaultError, match="scrypt parameters"):
        open_vault(path, PASSPHRASE)


def test_group_readable_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "card.sealed"
    seal(path, _secrets(), PASSPHRASE)
    os.chmod(path, 0o640)
    with pytest.raises(VaultError, match="chmod 600"):
        open_vault(path, PASSPHRASE)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="register"):
        open_vault(tmp_path / "none", PASSPHRASE)
    other = tmp_path / "other"
    other.write_text('{"format": 99}')
    os.chmod(other, 0o600)
    with pytest.raises(VaultError, match="format"):
        open_vault(other, PASSPHRASE)


def test_repr_shows_only_the_masked_pan() -> None:
    text = repr(_secrets()) + str(_secrets())
    assert TEST_PAN not in text and "411111******1111" in text
    assert pan_like_runs(text.encode()) == []


def test_unregistered_card_cannot_pay() -> None:
    with pytest.raises(VaultError, match="not registered"):
        CardSecrets(PAN(TEST_PAN), "203012", b"c" * 32).card()


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "from-env")
    assert read_passphrase(passphrase_source(None)) == "from-env"
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(VaultError, match=PASSPHRASE_ENV):
        read_passphrase(passphrase_source(None))
    secret = tmp_path / "passphrase"
    secret.write_text("from-file\n")
    os.chmod(secret, 0o644)
    with pytest.raises(VaultError, match="chmod 600"):
        read_passphrase(passphrase_source(secret))
    os.chmod(secret, 0o600)
    assert read_passphrase(passphrase_source(secret)) == "from-file"
