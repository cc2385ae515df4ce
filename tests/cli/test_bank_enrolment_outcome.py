"""``setpay bank issue-enrolment-code`` when a step fails: a card file that cannot be written
leaves the card's code unchanged; a ledger that cannot say whether it took the new code
leaves the card file, perhaps the code's only copy, and the command says so."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import gateway.issuer
from cli import bank
from cli.wallet import read_card_file
from gateway.config import BankConfig
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger, LedgerStore, StoreUnavailable, accounts
from gateway.provisioning import InitResult, init_bank
from setcore.pan import PAN
from setpay.v1 import registration_pb2
from tests.cards import card
from tests.cli.command_support import run_bank
from tests.cli.ledger_outcome_support import OutcomeUnknown

# Cards of these tests' own: BIN and serials.
TEST_BIN = "499995"
EXPIRY = "203012"
COMPLETE = registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-enrolment-outcome") / "bank", env={})


def _card_account(ledger: Ledger, serial: int) -> str:
    """A new card account of these tests' BIN; its PAN."""
    pan = card(TEST_BIN, serial)
    ledger.open_card_account(pan, EXPIRY, 5000, 978)
    return pan


def _issue_code(
    made: InitResult, pan: str, card_out: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """``setpay bank issue-enrolment-code`` for ``pan`` (read from a file beside
    ``card_out``, never the command line) to ``card_out``; (status, stdout, stderr)."""
    pan_file = card_out.with_name("pan.txt")
    pan_file.write_text(pan + "\n")
    return run_bank(
        ["--config", str(made.directory / "setpay.toml"), "issue-enrolment-code",
         "--pan-file", str(pan_file), "--card-out", str(card_out)],
        capsys,
    )  # fmt: skip


def test_a_lost_commit_acknowledgement_keeps_the_card_file(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ledger: Ledger,
) -> None:
    pan = _card_account(ledger, 1)
    card_out = tmp_path / "new.json"
    real_open_store = gateway.issuer.open_store

    def losing(config: BankConfig, *args: Any, **kwargs: Any) -> LedgerStore:
        store = real_open_store(config, *args, **kwargs)
        lost = StoreUnavailable("the connection broke before the commit was acknowledged")
        return OutcomeUnknown(  # type: ignore[return-value]
            store, accounts.set_enrolment_hash, committed=True, raised=lost
        )

    monkeypatch.setattr(gateway.issuer, "open_store", losing)
    status, out, err = _issue_code(made, pan, card_out, capsys)
    monkeypatch.undo()
    assert (status, out) == (1, "")
    # The ledger took the code: the kept file is the only way the holder ever gets it.
    assert card_out.exists(), "the card file of a code the ledger may hold was deleted"
    assert stat.S_IMODE(card_out.stat().st_mode) == 0o600
    assert "may or may not hold the code" in err and "run issue-enrolment-code again" in err
    assert pan not in err
    code = read_card_file(card_out)[2]
    assert code is not None and code not in err
    word = LedgerDirectory(ledger).check_enrolled_card(PAN(pan), EXPIRY, code)
    assert (word.status, word.has_code) == (COMPLETE, True)


def test_a_card_file_that_cannot_be_written_leaves_the_code_unchanged(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ledger: Ledger,
) -> None:
    pan = _card_account(ledger, 2)
    card_out = tmp_path / "new.json"

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bank.os, "fsync", disk_full)
    status, out, err = _issue_code(made, pan, card_out, capsys)
    assert (status, out) == (1, "")
    assert "cannot write --card-out" in err and "the card's code is unchanged" in err
    assert not card_out.exists()
    word = LedgerDirectory(ledger).check_enrolled_card(PAN(pan), EXPIRY, None)
    assert (word.status, word.has_code) == (COMPLETE, False)
