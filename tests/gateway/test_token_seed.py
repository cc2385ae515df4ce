"""The token seed ``setpay init`` stores: every process of a bank derives the same token key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.bank_pki import TOKEN_SEED_FILE, BankIncomplete, load_bank_pki
from gateway.config import load
from gateway.provisioning import init_bank
from setcore.errors import ErrorCode, ProtocolError
from setcore.token_seal import TokenKey

CT = "setpay.v1.CapTokenData"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bank") / "bank"
    init_bank(directory, profile="ec", env={})
    return directory


def _sealer(bank: Path) -> TokenKey:
    pki = load_bank_pki(load(bank / "setpay.toml"))
    try:
        return pki.token_sealer()
    finally:
        pki.close()


def test_two_processes_of_one_bank_open_each_others_tokens(bank: Path) -> None:
    xid, rrpid = os.urandom(32), os.urandom(32)
    sealed = _sealer(bank).seal(CT, b"token", xid=xid, rrpid=rrpid)
    assert _sealer(bank).open(sealed, CT) == b"token"


def test_a_bank_without_its_token_seed_does_not_start(bank: Path, tmp_path: Path) -> None:
    seed = bank / "certs" / TOKEN_SEED_FILE
    kept = seed.read_bytes()
    seed.unlink()
    try:
        with pytest.raises(BankIncomplete, match=TOKEN_SEED_FILE):
            load_bank_pki(load(bank / "setpay.toml"))
    finally:
        seed.write_bytes(kept)


def test_tokens_under_a_replaced_seed_are_refused(bank: Path) -> None:
    before = _sealer(bank)
    sealed = before.seal(CT, b"token", xid=os.urandom(32), rrpid=os.urandom(32))
    seed = bank / "certs" / TOKEN_SEED_FILE
    kept = seed.read_bytes()
    pki = load_bank_pki(load(bank / "setpay.toml"))
    try:
        seed.write_bytes(TokenKey.create(pki.backend, pki.token_key).seed)
    finally:
        pki.close()
    try:
        with pytest.raises(ProtocolError) as caught:
            _sealer(bank).open(sealed, CT)
        assert caught.value.code == ErrorCode.ERROR_CODE_WRONG_RECIPIENT
    finally:
        seed.write_bytes(kept)
    assert _sealer(bank).open(sealed, CT) == b"token"
