"""Files the wallet reads, malformed in ways the parsers do not call ValueError: nested past
the parser's depth (RecursionError, a traceback from ``setpay wallet``), or a card file's
scrypt parameter that is no integer (1e400, which JSON reads as infinity: OverflowError).
Each is refused with the error of its file, naming it, and nothing is sent or changed."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cli.wallet import read_card_file, read_initiation
from clients import config_file
from clients.errors import ClientError, ConfigError, VaultError
from clients.wallet import vault
from clients.wallet.purchase_book import PurchaseBook
from clients.wallet.vault import CardSecrets, open_vault, seal
from setcore.pan import PAN
from tests.cards import VISA

from .conftest import Setpay

PASSPHRASE = "correct horse battery staple"
# Far past Python's parsers' depth (the recursion limit, 1000), and small: 6 KB.
DEPTH = 3000


def _nested_json(path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("[" * DEPTH + "]" * DEPTH)
    return path


def test_a_deeply_nested_initiation_is_not_json_to_pay(tmp_path: Path) -> None:
    path = _nested_json(tmp_path / "initiation.json")
    with pytest.raises(ClientError, match="is not JSON: expected a SET Initiation"):
        read_initiation(path)


def test_purchase_refuses_a_deeply_nested_initiation_without_a_traceback(
    tmp_path: Path, setpay: Setpay
) -> None:
    path = _nested_json(tmp_path / "initiation.json")
    status, out, err = setpay(
        ["wallet", "--dir", str(tmp_path), "purchase", "--initiation", str(path)]
    )
    assert (status, out) == (1, "")
    assert err == f"setpay wallet: {path} is not JSON: expected a SET Initiation\n"


def test_a_deeply_nested_card_file_is_no_card_file(tmp_path: Path) -> None:
    # Within the card file's bound (4096 bytes) and past the parser's depth.
    path = tmp_path / "card.json"
    path.write_text("[" * 2000 + "]" * 2000)
    with pytest.raises(ClientError, match=r"is not a card file \(RecursionError\)"):
        read_card_file(path)


def test_a_deeply_nested_sealed_card_file_is_refused(tmp_path: Path) -> None:
    path = _nested_json(tmp_path / "card.sealed")
    with pytest.raises(VaultError, match="is not a sealed card file"):
        open_vault(path, PASSPHRASE)


def test_a_deeply_nested_purchase_book_is_unreadable(tmp_path: Path) -> None:
    path = _nested_json(tmp_path / "purchases.json")
    with pytest.raises(ConfigError, match="is unreadable: nested too deeply"):
        PurchaseBook(path).all()


def test_a_deeply_nested_configuration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wallet.toml"
    path.write_text("brand = " + "[" * DEPTH + "]" * DEPTH + "\n")
    with pytest.raises(ConfigError, match="nested too deeply to be a configuration"):
        config_file.read(path, "wallet")


@pytest.mark.parametrize(
    "value",
    ["1e400", "-1e400", "32768.0", '"32768"', "true"],
    ids=["infinity", "minus-infinity", "float", "text", "boolean"],
)
@pytest.mark.parametrize("name", ["n", "r", "p"])
def test_a_scrypt_parameter_that_is_no_integer_is_malformed(
    tmp_path: Path, name: str, value: str
) -> None:
    path = tmp_path / "card.sealed"
    seal(path, CardSecrets(PAN(VISA), "203012", b"c" * 32, b"p" * 32), PASSPHRASE)
    sealed = json.loads(path.read_bytes())
    written = sealed["kdf"][name]
    # Spliced as text: json.dumps writes no 1e400.
    text = json.dumps(sealed).replace(f'"{name}": {written},', f'"{name}": {value},')
    assert text != json.dumps(sealed)
    path.write_text(text)
    with pytest.raises(VaultError, match="is malformed"):
        open_vault(path, PASSPHRASE)


@pytest.mark.parametrize("plain", [b'["a card"]', b'"a card"', b"42", b"null"])
def test_a_sealed_card_file_whose_content_is_no_object_is_refused(
    tmp_path: Path, plain: bytes
) -> None:
    """Authenticated, so only the passphrase's holder could make it: a list's ``.get``
    was a traceback, where any other bad content is a plain refusal."""
    path = tmp_path / "card.json"
    seal(path, CardSecrets(PAN(VISA), "203012", b"s" * 32, None), "passphrase")
    sealed = json.loads(path.read_text())
    salt, nonce = base64.b64decode(sealed["kdf"]["salt"]), base64.b64decode(sealed["nonce"])
    key = vault._key("passphrase", salt, vault.SCRYPT_N, vault.SCRYPT_R, vault.SCRYPT_P)
    sealed["ciphertext"] = base64.b64encode(
        AESGCM(key).encrypt(nonce, plain, vault._AD + salt)
    ).decode()
    path.write_text(json.dumps(sealed))
    with pytest.raises(VaultError) as refused:
        open_vault(path, "passphrase")
    assert str(refused.value) == f"{path} holds no valid card data (TypeError)"
