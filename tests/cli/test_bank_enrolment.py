"""``setpay bank open-account`` and ``issue-enrolment-code``: the card's enrolment code goes
to the card file (mode 0600) and nowhere else, and a new code replaces the earlier one."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.wallet import read_card_file
from gateway.config import BankConfig, load
from gateway.issuer import LedgerDirectory, open_ledger
from gateway.ledger import Ledger
from gateway.ledger.enrolment import ENROLMENT_CODE_CHARS, normalize_enrolment_code
from gateway.provisioning import InitResult, init_bank
from setcore.pan import PAN
from setpay.v1 import registration_pb2
from tests.cards import card
from tests.cli.command_support import run_bank

# Cards of these tests' own: BIN and serials.
TEST_BIN = "499996"
EXPIRY = "203012"
COMPLETE = registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE
REJECTED = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-enrolment") / "bank", env={})


@pytest.fixture
def config(made: InitResult) -> BankConfig:
    return load(made.directory / "setpay.toml")


@pytest.fixture
def ledger(config: BankConfig) -> Iterator[Ledger]:
    opened = open_ledger(config)
    yield opened
    opened.close()


def _bank(made: InitResult, *argv: str) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml"), *argv]


def _open(made: InitResult, tmp_path: Path, serial: int) -> tuple[str, Path]:
    pan = card(TEST_BIN, serial)
    (tmp_path / "pan.txt").write_text(pan + "\n")
    return pan, tmp_path / f"card-{serial}.json"


def _word(ledger: Ledger, pan: str, code: str | None) -> tuple[int, bool]:
    word = LedgerDirectory(ledger).check_enrolled_card(PAN(pan), EXPIRY, code)
    return word.status, word.has_code


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_open_account_writes_the_code_to_the_card_file_only(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ledger: Ledger,
    config: BankConfig,
) -> None:
    pan, card_file = _open(made, tmp_path, 1)
    status, out, err = run_bank(
        _bank(made, "open-account", "--limit", "5000", "--expiry", EXPIRY, "--pan-file",
              str(tmp_path / "pan.txt"), "--card-out", str(card_file)),
        capsys,
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert _private(card_file)
    code = json.loads(card_file.read_text())["enrolment_code"]
    canonical = normalize_enrolment_code(code)
    assert canonical is not None and len(canonical) == ENROLMENT_CODE_CHARS
    assert code not in out and canonical not in out and pan not in out
    assert read_card_file(card_file) == (PAN(pan), EXPIRY, code)
    assert _word(ledger, pan, code) == (COMPLETE, True)
    assert _word(ledger, pan, None) == (REJECTED, True)
    # The ledger's files hold neither form of it.
    ledger_file = Path(config.ledger_url()[len("sqlite:") :])
    stored = b"".join(
        p.read_bytes() for p in ledger_file.parent.iterdir() if p.name.startswith(ledger_file.name)
    )
    assert code.encode() not in stored and canonical.encode() not in stored


def test_issue_enrolment_code_gives_a_card_without_one_a_code_then_replaces_it(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    pan = card(TEST_BIN, 2)
    ledger.open_card_account(pan, EXPIRY, 5000, 978)  # opened before codes existed
    assert _word(ledger, pan, None) == (COMPLETE, False)
    pan_file = tmp_path / "pan.txt"
    pan_file.write_text(pan + "\n")
    first = tmp_path / "first.json"
    status, out, err = run_bank(
        _bank(made, "issue-enrolment-code", "--pan-file", str(pan_file), "--card-out", str(first)),
        capsys,
    )
    assert (status, err) == (0, "")
    assert "earlier code of the card no longer works" in out and "no longer lock it" in out
    assert _private(first)
    code = read_card_file(first)[2]
    assert code is not None and code not in out and pan not in out
    assert _word(ledger, pan, code) == (COMPLETE, True)
    # From its card file: a new code, the first no longer works.
    second = tmp_path / "second.json"
    status, out, err = run_bank(
        _bank(made, "issue-enrolment-code", "--card", str(first), "--card-out", str(second)),
        capsys,
    )
    assert (status, err) == (0, "")
    replaced = read_card_file(second)[2]
    assert replaced is not None and replaced != code
    assert _word(ledger, pan, code) == (REJECTED, True)
    assert _word(ledger, pan, replaced) == (COMPLETE, True)


def test_issue_enrolment_code_refuses_a_closed_card_and_leaves_no_file(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    pan = card(TEST_BIN, 3)
    account = ledger.open_card_account(pan, EXPIRY, 5000, 978)
    ledger.close_card_account(account.account_id)
    pan_file, out_file = tmp_path / "pan.txt", tmp_path / "new.json"
    pan_file.write_text(pan + "\n")
    status, out, err = run_bank(
        _bank(made, "issue-enrolment-code", "--pan-file", str(pan_file), "--card-out",
              str(out_file)),
        capsys,
    )  # fmt: skip
    assert (status, out) == (1, "")
    assert "closed" in err and pan not in err
    assert not out_file.exists()
    assert _word(ledger, pan, None)[1] is False
