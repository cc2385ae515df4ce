"""``--form NAME=VALUE`` mistyped: refused as a usage error (exit 2) that repeats the item
only when it is plainly a field name (``setcore.enrolment_code.given_name``), never a card
number or the card's enrolment code typed there by mistake, a code with no digit in it
(about one in 400) included; a misspelt field name is still named."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from cli.party_options import UsageError, parse_form
from clients.merchant.config import write_config as write_merchant_config
from clients.peers import PeerConfig
from clients.wallet.config import load, write_config
from tests.cards import VISA
from tests.cli.command_support import USAGE
from tests.cli.root_pin_support import brand_root
from tests.clients.cli_support import run_cli

# An enrolment code as the issuer's letter prints it (``gateway.ledger.enrolment``): a few
# digits among letters, far fewer than a card number.
CODE = "7K3M-Q9TX-4B2D-8F6H"
# One in about 400 codes holds no digit at all: letters and hyphens, like a field name.
NO_DIGIT_CODE = "BNJZ-TZXB-KRPV-EXSM"
NOT_REPEATED = "characters given (not repeated: only a plain field name is)"
# What must never be repeated: a card number whole, spaced as on the card, in another
# script's digits, and an enrolment code however it is typed.
SECRETS = {
    "card": VISA,
    "spaced": " ".join(VISA[i : i + 4] for i in range(0, len(VISA), 4)),
    "fullwidth": VISA.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}),
    "code": CODE,
    "no-digit-code": NO_DIGIT_CODE,
    "lower-case-code": NO_DIGIT_CODE.lower(),
    "unseparated-code": NO_DIGIT_CODE.replace("-", ""),
    "labelled-code": f"enrolment-code:{NO_DIGIT_CODE}",
    "code-in-a-name": f"code-{NO_DIGIT_CODE.lower()}",
}


@pytest.mark.parametrize("given", SECRETS.values(), ids=SECRETS.keys())
def test_a_value_without_a_name_is_not_repeated(given: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_form(["cardholder-name=A. Holder", given])
    said = str(refused.value)
    assert given not in said and given.replace(" ", "") not in said.replace(" ", "")
    assert NO_DIGIT_CODE.lower() not in said.lower()
    assert said == f"--form takes NAME=VALUE, not the {len(given)} {NOT_REPEATED}"


@pytest.mark.parametrize("given", ["cardholder-name", "cardholder-nmae", "Name", "legal-nmae"])
def test_a_name_without_a_value_is_named(given: str) -> None:
    """Plainly a field name whose ``=VALUE`` was forgotten, or misspelt besides: named
    (one line, quoted), so the holder sees the slip."""
    with pytest.raises(UsageError) as refused:
        parse_form([given])
    assert str(refused.value) == f"--form takes NAME=VALUE, not {given!r}"


@pytest.mark.parametrize("given", ["post\tcode", "post code", "name:", "billing-postcodes"])
def test_what_is_not_plainly_a_name_is_measured(given: str) -> None:
    """A control character, a space or a ':' (a value after its label), or as many
    letters as a code has: only its length is said."""
    with pytest.raises(UsageError) as refused:
        parse_form([given])
    assert str(refused.value) == f"--form takes NAME=VALUE, not the {len(given)} {NOT_REPEATED}"


def test_a_long_text_without_digits_is_not_repeated() -> None:
    """``shown``'s bound still holds: a pasted paragraph is not echoed either."""
    given = "word " * 20
    with pytest.raises(UsageError) as refused:
        parse_form([given])
    assert given not in str(refused.value) and f"the {len(given)} characters" in str(refused.value)


def test_values_that_hold_digits_are_taken_as_given() -> None:
    """Only an item without ``=`` is refused: a card number or code as a value is the
    holder's to send (the enrolment-code field asks for one)."""
    form = parse_form([f"enrolment-code={CODE}", f"note={VISA}", "a=b=c"])
    assert form == {"enrolment-code": CODE, "note": VISA, "a": "b=c"}


def _card(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pan": VISA, "expiry": "203012"}, handle)
    return path


def test_the_wallet_refuses_a_card_number_as_form_without_repeating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Exit 2 before the root is pinned or the CA asked; neither stderr nor a log line
    holds the number."""
    directory = tmp_path / "wallet"
    write_config(directory, ca=PeerConfig("127.0.0.1:9", directory / "tls/root.pem"))
    root, _ = brand_root(tmp_path, "brand")
    argv = ["wallet", "--dir", str(directory), "register", "--card", str(_card(tmp_path)),
            "--root", str(root), "--form", VISA]  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        status, out, err = run_cli(argv, capsys)
    assert (status, out) == (USAGE, "")
    assert err == f"setpay wallet: --form takes NAME=VALUE, not the {len(VISA)} {NOT_REPEATED}\n"
    assert VISA not in caplog.text
    assert not load(directory).root.exists()


@pytest.mark.parametrize("given", [NO_DIGIT_CODE, NO_DIGIT_CODE.lower()], ids=["upper", "lower"])
def test_the_wallet_refuses_a_code_without_digits_as_form_without_repeating_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    given: str,
) -> None:
    """The enrolment code typed where ``--form enrolment-code=CODE`` was meant, a code
    without a digit: it used to be quoted whole on stderr."""
    directory = tmp_path / "wallet"
    write_config(directory, ca=PeerConfig("127.0.0.1:9", directory / "tls/root.pem"))
    root, _ = brand_root(tmp_path, "brand")
    argv = ["wallet", "--dir", str(directory), "register", "--card", str(_card(tmp_path)),
            "--root", str(root), "--form", "cardholder-name=A. Holder",
            "--form", given]  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        status, out, err = run_cli(argv, capsys)
    assert (status, out) == (USAGE, "")
    assert err == f"setpay wallet: --form takes NAME=VALUE, not the {len(given)} {NOT_REPEATED}\n"
    assert NO_DIGIT_CODE.lower() not in (err + caplog.text).lower()
    assert not load(directory).root.exists()


def test_the_merchant_refuses_a_card_number_as_form_without_repeating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:9", directory / "tls/root.pem")
    write_merchant_config(directory, merchant_id="m-form", name="Shop", gateway=peer, ca=peer)
    root, _ = brand_root(tmp_path, "brand")
    argv = ["merchant", "--dir", str(directory), "register", "--root", str(root),
            "--form", "a=1", "--form", VISA]  # fmt: skip
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (USAGE, "")
    assert VISA not in err
    assert f"--form takes NAME=VALUE, not the {len(VISA)} {NOT_REPEATED}" in err
    assert not (directory / "keys").exists()


def test_the_merchant_refuses_a_labelled_code_as_form_without_repeating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``label:CODE`` where ``label=CODE`` was meant: the ':' alone keeps it unrepeated."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:9", directory / "tls/root.pem")
    write_merchant_config(directory, merchant_id="m-form", name="Shop", gateway=peer, ca=peer)
    root, _ = brand_root(tmp_path, "brand")
    given = f"enrolment-code:{NO_DIGIT_CODE}"
    argv = ["merchant", "--dir", str(directory), "register", "--root", str(root),
            "--form", given]  # fmt: skip
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (USAGE, "")
    assert NO_DIGIT_CODE not in err
    assert f"--form takes NAME=VALUE, not the {len(given)} {NOT_REPEATED}" in err
    assert not (directory / "keys").exists()
