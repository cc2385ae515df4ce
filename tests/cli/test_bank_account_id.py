"""``setpay bank show-account`` (and block, unblock, close) take a card account id as
``open-account`` printed it: anything else, a card number typed there by mistake above
all, is a usage error that does not repeat it. The ledger's "no card account" error
names the id it was given, so a card number reached it whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ledger import AccountStatus, Ledger
from gateway.provisioning import InitResult, init_bank
from tests.cards import NINETEEN_DIGITS, card
from tests.cli.command_support import USAGE, run_bank

ACCOUNT_COMMANDS = ("show-account", "block-account", "unblock-account", "close-account")
# A card number as an operator holding the customer's card would type it.
TYPED_PAN = card("499999", 77)
EXPIRY = "203012"
# Not a card account id, each for its own reason; the card numbers must not be shown.
REFUSED = {
    "a card number": TYPED_PAN,
    "the longest card number": NINETEEN_DIGITS,
    "a card number after the prefix": "card-" + TYPED_PAN,
    "upper case": "card-" + "A" * 24,
    "a digit base32 has not": "card-" + "a" * 23 + "1",
    "too short": "card-" + "a" * 23,
    "too long": "card-" + "a" * 25,
    "a merchant's account id": "merchant-" + "a" * 24,
    "empty": "",
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-account-id") / "bank", env={})


def _config(made: InitResult) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml")]


@pytest.mark.parametrize("command", ACCOUNT_COMMANDS)
@pytest.mark.parametrize("given", sorted(REFUSED), ids=str)
def test_what_is_not_a_card_account_id_is_a_usage_error_never_repeated(
    made: InitResult, capsys: pytest.CaptureFixture[str], command: str, given: str
) -> None:
    value = REFUSED[given]
    with pytest.raises(SystemExit) as stopped:
        run_bank([*_config(made), command, "--account", value], capsys)
    assert stopped.value.code == USAGE
    out, err = capsys.readouterr()
    assert out == "" and "argument --account: a card account id is card- and 24 " in err
    assert f"(given: {len(value)} characters)" in err
    if value:
        assert value not in err
    assert TYPED_PAN not in err and NINETEEN_DIGITS not in err


def test_an_unknown_card_account_id_is_named_in_a_clear_error(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = "card-" + "a" * 24
    code, out, err = run_bank([*_config(made), "show-account", "--account", unknown], capsys)
    assert (code, out) == (1, "")
    assert err == f"setpay bank: no card account {unknown}\n"


def test_a_card_account_is_shown_blocked_and_closed_by_the_id_open_account_printed(
    made: InitResult, capsys: pytest.CaptureFixture[str], ledger: Ledger, tmp_path: Path
) -> None:
    pan_file = tmp_path / "pan.txt"
    pan_file.write_text(TYPED_PAN + "\n")
    code, out, err = run_bank(
        [*_config(made), "open-account", "--limit", "5000", "--expiry", EXPIRY,
         "--pan-file", str(pan_file), "--card-out", str(tmp_path / "card.json")],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    account = ledger.find_card_account(TYPED_PAN)
    assert out.split()[1] == account.account_id
    for command, status in (
        ("show-account", AccountStatus.ACTIVE),
        ("block-account", AccountStatus.BLOCKED),
        ("unblock-account", AccountStatus.ACTIVE),
        ("close-account", AccountStatus.CLOSED),
    ):
        code, out, err = run_bank(
            [*_config(made), command, "--account", account.account_id], capsys
        )
        assert (code, err) == (0, "")
        assert out.split() == [account.account_id, account.masked_pan, status.value,
                               "limit", "5000", "available", "5000"]  # fmt: skip
        assert TYPED_PAN not in out
