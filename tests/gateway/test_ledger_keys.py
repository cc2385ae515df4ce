"""ledger.keys is sealed under the bank's key backend (software keystore here; SoftHSM in
test_ledger_keys_token): without the backend the file opens no PAN, and in another bank
it is refused."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from gateway.bank_pki import BankIncomplete
from gateway.config import BankConfig
from gateway.issuer import open_ledger
from gateway.process import start_bank
from tests.cards import card

from .ledger_keys_support import held_keys, make_older_bank, new_bank, open_card, traces

PANS = [card("499999", serial) for serial in (21, 22)]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> BankConfig:
    return new_bank(tmp_path_factory.mktemp("sealed") / "bank")


def test_a_new_banks_file_holds_neither_key(bank: BankConfig) -> None:
    data = bank.path(bank.ledger_keys).read_bytes()
    for trace in traces(held_keys(bank)):
        assert trace not in data
    assert "data_key" not in json.loads(data)


def test_every_process_of_the_bank_opens_the_same_keys(bank: BankConfig) -> None:
    account = open_card(bank, PANS[0])
    again = open_ledger(bank)
    try:
        assert again.find_card_account(PANS[0]).account_id == account
        assert again.reveal_pan(account) == PANS[0]
    finally:
        again.close()


def test_a_plaintext_file_is_refused_naming_the_command_that_seals_it(tmp_path: Path) -> None:
    # A directory name a shell would split: the advised command still pastes whole.
    config = new_bank(tmp_path / "the bank")
    keys, _ = make_older_bank(config, PANS)
    path = config.path(config.ledger_keys)
    before = path.read_bytes()
    with pytest.raises(BankIncomplete, match="in plaintext") as refused:
        open_ledger(config)
    advised = re.search(r"`(setpay bank [^`]+)`", str(refused.value))
    assert advised is not None
    config_file = str(config.base_dir / "setpay.toml")
    assert shlex.split(advised.group(1)) == [
        "setpay", "bank", "--config", config_file, "seal-ledger-keys",
    ]  # fmt: skip
    # A bank does not start on it either (a worker's start, in this process).
    with pytest.raises(BankIncomplete, match="seal-ledger-keys"):
        start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    assert path.read_bytes() == before
    for trace in traces(keys):
        assert trace not in str(refused.value).encode()


def test_a_file_moved_to_another_bank_is_refused(bank: BankConfig, tmp_path: Path) -> None:
    other = new_bank(tmp_path / "other")
    moved = other.path(other.ledger_keys)
    kept = moved.read_bytes()
    shutil.copy2(bank.path(bank.ledger_keys), moved)
    with pytest.raises(BankIncomplete, match=r"sealed to another key 'gateway-token' v1") as no:
        open_ledger(other)
    assert "another bank" in str(no.value)
    for trace in traces(held_keys(bank)):
        assert trace not in str(no.value).encode()
    moved.write_bytes(kept)
    open_ledger(other).close()


def test_a_damaged_file_is_refused_without_its_content(bank: BankConfig, tmp_path: Path) -> None:
    other = new_bank(tmp_path / "other")
    path = other.path(other.ledger_keys)
    document = json.loads(path.read_bytes())
    document["ciphertext"] = ("00" if document["ciphertext"][:2] != "00" else "11") + document[
        "ciphertext"
    ][2:]
    path.write_text(json.dumps(document))
    with pytest.raises(BankIncomplete, match="does not open with key 'gateway-token' v1"):
        open_ledger(other)
    path.write_text('{"format": "setpay-ledger-keys/2", "key": 7}')
    with pytest.raises(BankIncomplete, match="is not a ledger keys file"):
        open_ledger(other)


def test_a_missing_or_unreadable_file_is_named_as_the_banks_not_a_raw_os_error(
    tmp_path: Path,
) -> None:
    other = new_bank(tmp_path / "other")
    path = other.path(other.ledger_keys)
    kept = path.read_bytes()
    path.unlink()
    with pytest.raises(BankIncomplete, match=r"ledger\.keys is missing: the ledger keys"):
        open_ledger(other)
    path.mkdir()  # not a file: unreadable as one
    with pytest.raises(BankIncomplete, match=r"cannot read .*ledger\.keys"):
        open_ledger(other)
    path.rmdir()
    path.write_bytes(kept)
    path.chmod(0o644)
    with pytest.raises(BankIncomplete, match=r"readable by its owner only \(chmod 600\)"):
        open_ledger(other)
    path.chmod(0o600)
    open_ledger(other).close()
