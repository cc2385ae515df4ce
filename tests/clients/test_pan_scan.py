"""The PAN scanner the no-card-number tests rely on: what it finds and what it sets aside."""

from __future__ import annotations

from pathlib import Path

from tests.cards import VISA, luhn_complete, wrong_check_digit
from tests.clients.pan_scan import (
    HEX_TOKEN_CHARS,
    files_with_pans,
    lines_with_pans,
    luhn_runs,
    pan_like_runs,
)

CARD = VISA.encode()
NOT_LUHN = wrong_check_digit(VISA).encode()


def test_a_card_number_in_text_or_binary_is_found_masked() -> None:
    assert pan_like_runs(b"charged card " + CARD + b" today") == ["411111...1111"]
    assert pan_like_runs(b"pan=" + CARD + b";") == ["411111...1111"]
    assert pan_like_runs(b"x" + CARD + b"y") == ["411111...1111"]  # a short token
    assert pan_like_runs(b"\x00\x07" + CARD + b"\xff\x10") == ["411111...1111"]


def test_digits_that_fail_luhn_or_length_are_not_card_numbers() -> None:
    assert pan_like_runs(b"order " + NOT_LUHN) == []
    assert pan_like_runs(b"41111111111") == []  # 11 digits
    assert pan_like_runs(b"4" * 20) == []  # 20 digits: no card is that long


def test_a_long_hex_token_is_a_digest_not_a_card() -> None:
    digest = CARD + b"ab" * 8
    assert luhn_runs(digest) == ["411111...1111"]  # the raw scan sees the run
    assert pan_like_runs(b"thumb " + digest + b"\n") == []
    # A token with a letter beyond f is not hex, so not a digest: still scanned.
    assert pan_like_runs(CARD + b"g" * HEX_TOKEN_CHARS) == ["411111...1111"]
    # Nor is a run of digits alone, however long: a card number is one.
    assert pan_like_runs(b"thumb " + CARD + b"\n") == ["411111...1111"]


def test_a_short_hex_id_is_set_aside_from_its_length_on() -> None:
    # A 64-bit id the merchant's order listing showed: 13 digits, Luhn-valid, then hex.
    short_id = luhn_complete("039311927789").encode() + b"bad"
    assert len(short_id) == HEX_TOKEN_CHARS
    assert luhn_runs(short_id) == ["039311...7894"]
    assert pan_like_runs(b"order " + short_id + b" authorized\n") == []
    # One character shorter, it is scanned like any other text.
    assert pan_like_runs(b"order " + short_id[:-1] + b"\n") == ["039311...7894"]


def test_files_and_lines_name_where_a_card_number_is(tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "leak.log").write_bytes(b"pan " + CARD + b"\n")
    (tmp_path / "clean.json").write_bytes(b'{"xid": "' + CARD + b"cd" * 10 + b'"}')
    assert files_with_pans(tmp_path) == {"deep/leak.log": ["411111...1111"]}
    assert lines_with_pans(["ok", "card " + CARD.decode()]) == ["card " + CARD.decode()]
