"""ledger.keys sealed to the gateway-token key on a SoftHSM token: opened through the
token, sealed from an older bank's plaintext file, refused on another token."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bank_pki import BankIncomplete
from gateway.issuer import open_ledger
from tests.cards import card
from tests.cli.command_support import run_bank
from tests.hsm.testbed import SoftToken, session_softhsm

from .ledger_keys_support import held_keys, make_older_bank, new_bank, open_card, traces

PANS = [card("499999", serial) for serial in (41, 42)]


@pytest.fixture
def other_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    """A second token beside the ``token`` of tests/gateway/conftest.py: another bank's."""
    made = session_softhsm(tmp_path_factory).init_token()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


@pytest.mark.integration
def test_a_bank_on_a_token_seals_its_keys_to_it(
    tmp_path: Path, token: SoftToken, other_token: SoftToken
) -> None:
    config = new_bank(tmp_path / "bank", token.uri())
    data = config.path(config.ledger_keys).read_bytes()
    keys = held_keys(config)
    for trace in traces(keys):
        assert trace not in data
    account = open_card(config, PANS[0])
    again = open_ledger(config)
    try:
        assert again.reveal_pan(again.find_card_account(PANS[0]).account_id) == PANS[0]
        assert again.card_account(account).masked_pan.endswith(PANS[0][-4:])
    finally:
        again.close()

    # The file in a bank on another token: refused, naming the mismatch.
    other = new_bank(tmp_path / "other", other_token.uri())
    shutil.copy2(config.path(config.ledger_keys), other.path(other.ledger_keys))
    with pytest.raises(BankIncomplete, match="sealed to another key 'gateway-token' v1") as no:
        open_ledger(other)
    for trace in traces(keys):
        assert trace not in str(no.value).encode()


@pytest.mark.integration
def test_an_older_bank_on_a_token_is_refused_then_sealed_with_its_accounts(
    tmp_path: Path, token: SoftToken, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_bank(tmp_path / "bank", token.uri())
    keys, accounts = make_older_bank(config, PANS)
    with pytest.raises(BankIncomplete, match=r"in plaintext.*seal-ledger-keys"):
        open_ledger(config)
    code, out, err = run_bank(
        ["--config", str(config.base_dir / "setpay.toml"), "seal-ledger-keys"], capsys
    )
    assert (code, err) == (0, ""), err
    assert "sealed to key 'gateway-token' v1" in out
    data = config.path(config.ledger_keys).read_bytes()
    for trace in traces(keys):
        assert trace not in data
    ledger = open_ledger(config)
    try:
        for pan, account in zip(PANS, accounts, strict=True):
            assert ledger.find_card_account(pan).account_id == account
            assert ledger.reveal_pan(account) == pan
    finally:
        ledger.close()
