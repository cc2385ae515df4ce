"""``setpay merchant register`` for a merchant ID the bank enrolled: without the account id
the bank handed out, the Merchant CA refuses (REJECTED_BY_AGENT) and says no more, so the
command says the way out; with it, the registration goes through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clients.bank_support import EUR, RunningBank, configure_merchant
from tests.clients.cli_support import run_cli

REFUSAL = "the Merchant CA refused: CERT_STATUS_CODE_REJECTED_BY_AGENT"
HINT = (
    "if the bank enrolled this merchant ID or it held certificates before, give the "
    "settlement account id the bank handed you with --account-file FILE"
)


def _owner_only(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return path


def test_an_enrolled_id_registered_without_its_account_is_told_to_give_it(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enrolled = bank.ledger.open_merchant_account("m-enrolled", EUR)  # setpay bank open-merchant
    directory = tmp_path / "m-enrolled"
    configure_merchant(bank, directory, "m-enrolled")
    register = ["merchant", "--dir", str(directory), "register"]

    status, out, err = run_cli(register, capsys)
    assert (status, out) == (1, "")
    assert err.startswith(f"setpay merchant: {REFUSAL}; {HINT}")
    assert "AcctData" not in err  # the bank's logged reason: the CA never sends it

    account = _owner_only(tmp_path / "account", enrolled.account_id)
    status, out, err = run_cli([*register, "--account-file", str(account)], capsys)
    assert (status, err) == (0, "")
    assert out.startswith("registered m-enrolled: ")


def test_a_wrong_account_given_gets_the_refusal_alone(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account was given: telling its user to give one would mislead."""
    bank.ledger.open_merchant_account("m-enrolled-wrong", EUR)
    directory = tmp_path / "m-enrolled-wrong"
    configure_merchant(bank, directory, "m-enrolled-wrong")
    account = _owner_only(tmp_path / "account", "merchant-not-this-one")
    status, _, err = run_cli(
        ["merchant", "--dir", str(directory), "register", "--account-file", str(account)], capsys
    )
    assert (status, err) == (1, f"setpay merchant: {REFUSAL}\n")
