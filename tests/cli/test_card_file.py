"""One parser of the card file ``open-account --card-out`` writes (``cli.card_file``), for
the bank's ``--card`` and the wallet's: the same file is taken or refused by both, each
naming it in its own words, never with the card number."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli import wallet
from cli.bank_card_file import BankCommandError, read_card_pan
from cli.card_file import CardFile, CardFileError, parse_card_file
from clients.errors import ClientError
from tests.gateway.actors import make_pan


def _written(number: str, **fields: object) -> bytes:
    return json.dumps({"pan": number, "expiry": "203012", "account": "a"} | fields).encode()


def test_the_fields_of_a_card_file() -> None:
    pan = make_pan(11)
    card = parse_card_file(_written(pan, enrolment_code="code-1"))
    assert isinstance(card, CardFile)
    assert (card.pan.reveal(), card.expiry, card.enrolment_code) == (pan, "203012", "code-1")
    # No code, or an empty one: the card has none.
    assert parse_card_file(_written(pan)).enrolment_code is None
    assert parse_card_file(_written(pan, enrolment_code="")).enrolment_code is None


@pytest.mark.parametrize(
    ("fields", "field", "error"),
    [
        ({"pan": None}, "pan", None),
        ({"pan": "4539578763621487"}, "pan", "InvalidPAN"),
        ({"expiry": "203013"}, "expiry", None),
        ({"enrolment_code": 1234}, None, "TypeError"),
    ],
    ids=["pan-null", "pan-luhn", "expiry-month", "code-number"],
)
def test_a_refusal_says_why_and_never_a_value(
    fields: dict[str, object], field: str | None, error: str | None
) -> None:
    pan = make_pan(12)
    with pytest.raises(CardFileError) as caught:
        parse_card_file(_written(pan, **fields))
    assert (caught.value.field, caught.value.error) == (field, error)
    assert pan not in str(caught.value) and re.search(r"[0-9]{13,19}", str(caught.value)) is None


def test_the_bank_refuses_a_code_the_wallet_refuses(tmp_path: Path) -> None:
    """An enrolment code that is not text: the wallet refused such a file and the bank took
    it (its ``--card`` reader, a copy of the wallet's, did not look at the code)."""
    path = tmp_path / "card.json"
    path.write_bytes(_written(make_pan(13), enrolment_code=1234))
    with pytest.raises(ClientError) as wallet_said:
        wallet.read_card_file(path)
    with pytest.raises(BankCommandError) as bank_said:
        read_card_pan(path)
    assert str(wallet_said.value) == f"{path} is not a card file (TypeError)"
    assert str(bank_said.value) == f"--card {path} is not a card file (TypeError)"
