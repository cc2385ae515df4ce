"""``setpay bank open-account`` when the ledger cannot say whether it opened the account
(StoreUnavailable: a commit made whose acknowledgement was lost, or none made): the card
file stays, holding what may be the only copy of the card's number and enrolment code,
and ``issue-enrolment-code --card`` with it tells the two apart."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

import gateway.issuer
from cli.wallet import read_card_file
from gateway.config import BankConfig
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger, LedgerStore, UnknownAccount, accounts
from gateway.provisioning import InitResult, init_bank
from setcore.pan import PAN
from setpay.v1 import registration_pb2
from tests.cli.command_support import run_bank
from tests.cli.ledger_outcome_support import OutcomeUnknown

EXPIRY = "203012"
COMPLETE = registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-open-outcome") / "bank", env={})


def _config(made: InitResult) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml")]


def _open_unconfirmed(
    made: InitResult,
    out: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    committed: bool,
    interrupted: bool = False,
) -> str:
    """``open-account`` (a random card number) into ``out`` whose opening the ledger
    does not confirm; its stderr, once it has exited 1 and printed nothing."""
    real_open_store = gateway.issuer.open_store

    def unconfirmed(config: BankConfig, *args: Any, **kwargs: Any) -> LedgerStore:
        store = real_open_store(config, *args, **kwargs)
        raised = KeyboardInterrupt() if interrupted else None
        return OutcomeUnknown(  # type: ignore[return-value]
            store, accounts.open_card, committed=committed, raised=raised
        )

    monkeypatch.setattr(gateway.issuer, "open_store", unconfirmed)
    argv = [*_config(made), "open-account", "--limit", "5000", "--expiry", EXPIRY,
            "--card-out", str(out)]  # fmt: skip
    status, stdout, err = run_bank(argv, capsys)
    monkeypatch.undo()
    assert (status, stdout) == (1, "")
    return err


def _issue_code(
    made: InitResult, card: Path, out: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    argv = [*_config(made), "issue-enrolment-code", "--card", str(card), "--card-out", str(out)]
    return run_bank(argv, capsys)


def test_a_lost_commit_acknowledgement_keeps_the_card_file(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ledger: Ledger,
) -> None:
    """The account is open, under a random number nobody else knows: the file the
    command used to delete was the only copy of that number and of the card's code."""
    out = tmp_path / "card.json"
    err = _open_unconfirmed(made, out, capsys, monkeypatch, committed=True)
    assert out.exists(), "the card data of an account the ledger may hold was deleted"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "may or may not have opened an account for the card" in err
    assert f"issue-enrolment-code --card {out}" in err and "Traceback" not in err
    kept = json.loads(out.read_text())
    assert set(kept) == {"pan", "expiry", "enrolment_code"}  # no account id: none known
    pan, expiry, code = read_card_file(out)  # a card file the wallet reads
    assert expiry == EXPIRY and code is not None
    assert pan.reveal() not in err and code not in err
    # The account is there, and the kept code is its code.
    account = ledger.find_card_account(pan.reveal())
    word = LedgerDirectory(ledger).check_enrolled_card(PAN(pan.reveal()), EXPIRY, code)
    assert (word.status, word.has_code) == (COMPLETE, True)
    # The advice works: the card gets a new code and a card file naming its account.
    status, said, err = _issue_code(made, out, tmp_path / "new.json", capsys)
    assert (status, err) == (0, "") and account.account_id in said
    assert json.loads((tmp_path / "new.json").read_text())["account"] == account.account_id


def test_an_opening_interrupted_as_it_waits_keeps_the_card_file(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ledger: Ledger,
) -> None:
    """Ctrl-C while the commit is awaited leaves the outcome as unknown as a lost
    acknowledgement: the file stays (it was deleted, the account open)."""
    out = tmp_path / "card.json"
    err = _open_unconfirmed(made, out, capsys, monkeypatch, committed=True, interrupted=True)
    assert out.exists(), "the card data of an account the ledger holds was deleted"
    assert err.startswith("setpay bank: interrupted; the ledger may or may not have opened")
    pan = read_card_file(out)[0]
    assert ledger.find_card_account(pan.reveal()) is not None
    assert pan.reveal() not in err


def test_an_opening_not_committed_keeps_the_file_and_issue_code_finds_no_account(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ledger: Ledger,
) -> None:
    """The command cannot tell this case from the one above; the advice can."""
    out = tmp_path / "card.json"
    _open_unconfirmed(made, out, capsys, monkeypatch, committed=False)
    pan = read_card_file(out)[0]
    with pytest.raises(UnknownAccount):
        ledger.find_card_account(pan.reveal())
    status, said, err = _issue_code(made, out, tmp_path / "new.json", capsys)
    assert (status, said) == (1, "")
    assert "no card account for this PAN" in err and pan.reveal() not in err
    assert not (tmp_path / "new.json").exists()


def test_a_kept_card_file_that_cannot_be_written_goes_and_says_so(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "card.json"

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cli.bank.os.fsync", full_disk)
    err = _open_unconfirmed(made, out, capsys, monkeypatch, committed=True)
    assert not out.exists()
    assert err.startswith(f"setpay bank: cannot write --card-out {out}: No space left on device")
    assert "the ledger may or may not have opened an account for the card" in err
