"""``setpay wallet register --card FILE``: a wrong card file is refused by name, never with
a traceback and never with the card number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import wallet
from clients.errors import ClientError
from tests.gateway.actors import make_pan


def _card_file(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "card.json"
    path.write_text(content)
    return path


def test_a_card_file_reads_whole(tmp_path: Path) -> None:
    pan = make_pan(7)
    path = _card_file(tmp_path, json.dumps({"pan": pan, "expiry": "203012", "account": "a"}))
    card, expiry = wallet.read_card(path)
    assert card.reveal() == pan and expiry == "203012"


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",  # JSON, but no object: a TypeError escaped as a traceback
        "42",
        '"a string"',
        "not json",
        '{"expiry": "203012"}',
        '{"pan": "1234", "expiry": "203012"}',
    ],
)
def test_not_a_card_file(tmp_path: Path, content: str) -> None:
    path = _card_file(tmp_path, content)
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert str(caught.value).startswith(f"{path} is not a card file")


def test_a_card_file_too_large_is_not_read_whole(tmp_path: Path) -> None:
    pan = make_pan(8)
    padding = " " * wallet.MAX_CARD_FILE_BYTES
    path = _card_file(tmp_path, json.dumps({"pan": pan, "expiry": "203012"}) + padding)
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert str(caught.value) == f"{path} is too large to be a card file"
    assert pan not in str(caught.value)


def test_an_unreadable_card_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert str(caught.value) == f"cannot read {path}: No such file or directory"
