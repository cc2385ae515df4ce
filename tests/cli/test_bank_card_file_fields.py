"""``setpay bank release-card`` and ``issue-enrolment-code`` read a card file's fields as
``open-account`` writes them: a ``pan`` that is a JSON number (``str()`` made it a card
number) or an expiry that is no YYYYMM of a year any CA takes is refused, naming the
file and the field, never the number; nothing is written and no code replaced."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.config import load
from gateway.issuer import open_ledger
from gateway.ledger.enrolment import new_enrolment_code
from gateway.provisioning import InitResult, init_bank
from tests.cards import card
from tests.cli.command_support import run_bank

# Cards of these tests' own: BIN and serial.
TEST_BIN = "499991"
EXPIRY = "203012"
EURO = 978
NOT_TEXT = "its pan is not text (a JSON string of digits)"
NO_EXPIRY = "its expiry is not YYYYMM of a year from 2000 to 2099"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-card-fields") / "bank", env={})


@pytest.fixture(scope="module")
def written(made: InitResult) -> dict[str, str]:
    """The card file of an open account, as ``open-account`` writes it."""
    pan, code = card(TEST_BIN, 1), new_enrolment_code()
    ledger = open_ledger(load(made.config_path, env={}))
    try:
        account = ledger.open_card_account(pan, EXPIRY, 1000, EURO, enrolment_code=code)
    finally:
        ledger.close()
    return {"pan": pan, "expiry": EXPIRY, "account": account.account_id, "enrolment_code": code}


def _commands(made: InitResult, path: Path) -> list[list[str]]:
    config = ["--config", str(made.config_path)]
    return [
        [*config, "release-card", "--card", str(path)],
        [*config, "issue-enrolment-code", "--card", str(path),
         "--card-out", str(path.with_name("new-card.json"))],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda pan: {"pan": int(pan)}, NOT_TEXT),
        (lambda pan: {"pan": float(pan)}, NOT_TEXT),
        (lambda pan: {"pan": [pan]}, NOT_TEXT),
        (lambda pan: {"expiry": "banana"}, NO_EXPIRY),
        (lambda pan: {"expiry": 203012}, NO_EXPIRY),
        (lambda pan: {"expiry": "203013"}, NO_EXPIRY),
        (lambda pan: {"expiry": "190012"}, NO_EXPIRY),
        (lambda pan: {"expiry": pan}, NO_EXPIRY),  # fields swapped: never shown
        (lambda pan: {"expiry": None}, NO_EXPIRY),
    ],
    ids=["pan-int", "pan-float", "pan-list", "expiry-word", "expiry-int", "expiry-month",
         "expiry-year", "expiry-pan", "expiry-null"],
)  # fmt: skip
def test_a_field_not_as_open_account_writes_it_is_refused(
    made: InitResult,
    written: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: object,
    says: str,
) -> None:
    monkeypatch.delenv("SETPAY_LEDGER", raising=False)
    pan = written["pan"]
    path = tmp_path / "card.json"
    path.write_text(json.dumps(written | change(pan)))  # type: ignore[operator]
    for argv in _commands(made, path):
        code, out, err = run_bank(argv, capsys)
        assert (code, out) == (1, "")
        assert err == f"setpay bank: --card {path} is not a card file: {says}\n"
        assert pan not in err and re.search(r"[0-9]{13,19}", err) is None
        assert not path.with_name("new-card.json").exists()


def test_a_card_file_without_expiry_is_refused(
    made: InitResult,
    written: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SETPAY_LEDGER", raising=False)
    path = tmp_path / "card.json"
    path.write_text(json.dumps({k: v for k, v in written.items() if k != "expiry"}))
    for argv in _commands(made, path):
        code, out, err = run_bank(argv, capsys)
        assert (code, out, err) == (
            1,
            "",
            f"setpay bank: --card {path} is not a card file (KeyError)\n",
        )


def test_the_card_file_open_account_wrote_is_still_read(
    made: InitResult,
    written: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SETPAY_LEDGER", raising=False)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(written))
    masked = f"{written['pan'][:6]}******{written['pan'][-4:]}"
    for argv in _commands(made, path):
        code, out, err = run_bank(argv, capsys)
        assert (code, err) == (0, "") and f"card {masked}" in out
    assert json.loads(path.with_name("new-card.json").read_text())["pan"] == written["pan"]
