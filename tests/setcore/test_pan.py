"""PAN handling: Luhn, masking, never showing digits, PANSecret and the blinded account."""

from __future__ import annotations

import os
import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from setcore.errors import ProtocolError
from setcore.pan import (
    MAX_PAN_DIGITS,
    MIN_HIDDEN_DIGITS,
    MIN_PAN_DIGITS,
    PAN,
    InvalidPAN,
    blinded_account,
    check_blinded_account,
    check_expiry,
    luhn_valid,
    mask_pan,
    pan_secret,
    trans_stain,
)
from tests.cards import MASTERCARD, VISA, luhn_complete, wrong_check_digit

# At most the BIN, then at least six stars, then exactly the last four.
_MASKED = re.compile(r"(?P<head>[0-9]{0,6})\*{6,}(?P<tail>[0-9]{4})")


def test_luhn_known_values() -> None:
    assert luhn_valid(VISA)
    assert luhn_valid(MASTERCARD)
    assert not luhn_valid(wrong_check_digit(VISA))


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_luhn_check_digit_completes(prefix: str) -> None:
    for d in "0123456789":
        if luhn_valid(prefix + d):
            assert sum(luhn_valid(prefix + x) for x in "0123456789") == 1
            return
    pytest.fail("no Luhn check digit found")


@pytest.mark.parametrize("bad", ["", "4111", wrong_check_digit(VISA), VISA[:14] + "x1", "4" * 20])
def test_invalid_pans_are_refused_without_echoing(bad: str) -> None:
    with pytest.raises(InvalidPAN) as exc:
        PAN(bad)
    if len(bad) >= 4:
        assert bad not in str(exc.value)


def test_pan_never_shows_its_digits() -> None:
    pan = PAN(VISA)
    percent = "%s" % (pan,)  # noqa: UP031 - the old formatting path must mask too
    shown = [str(pan), repr(pan), f"{pan}", f"{pan:>30}", percent, str([pan]), str({1: pan})]
    for text in shown:
        assert VISA not in text
        assert "411111" in text and "1111" in text
    assert pan.masked == "411111******1111"
    assert pan.bin == "411111" and pan.last4 == "1111"
    assert pan.reveal() == VISA
    with pytest.raises(TypeError):
        pickle.dumps(pan)
    assert not hasattr(pan, "__dict__")


@pytest.mark.parametrize(
    ("length", "shown_head"), [(13, 3), (14, 4), (15, 5), (16, 6), (17, 6), (18, 6), (19, 6)]
)
def test_a_pan_of_any_length_hides_six_digits_and_shows_at_most_the_last_four(
    length: int, shown_head: int
) -> None:
    """BIN and last four of a 13-digit card left three digits hidden: ~10 candidates once
    the Luhn check is applied. Six hidden digits leave 10^5, whatever the length."""
    digits = luhn_complete("4" + "2" * (length - 2))
    pan = PAN(digits)
    match = _MASKED.fullmatch(pan.masked)
    assert match is not None, pan.masked
    assert len(pan.masked) == length
    assert pan.masked.count("*") >= MIN_HIDDEN_DIGITS
    assert match["head"] == digits[:shown_head] and match["tail"] == digits[-4:]
    percent = "%s" % (pan,)  # noqa: UP031 - the old formatting path must mask too
    assert [str(pan), f"{pan}", format(pan), f"{pan:>30}".strip(), percent] == [pan.masked] * 5
    assert repr(pan) == f"PAN({pan.masked})"
    for shown in (str(pan), repr(pan), f"{pan:>30}", str([pan])):
        assert digits not in shown and digits[:-4] not in shown


@given(st.text(alphabet="0123456789", max_size=25))
def test_the_mask_hides_six_digits_of_anything_it_is_given(digits: str) -> None:
    masked = mask_pan(digits)
    assert len(masked) == len(digits)
    assert masked.count("*") >= min(MIN_HIDDEN_DIGITS, len(digits))
    assert sum(c != "*" for c in masked) <= 10


def test_the_length_bounds_are_set_cards() -> None:
    """ISO/IEC 7812 allows 8 to 19 digits; SET's cards are 13 to 19, the ledger's too."""
    assert (MIN_PAN_DIGITS, MAX_PAN_DIGITS) == (13, 19)
    with pytest.raises(InvalidPAN, match="13 to 19 digits, not 12"):
        PAN(luhn_complete("4" * 11))


def test_pan_secret_needs_both_halves() -> None:
    card_secret, nonce = os.urandom(32), os.urandom(32)
    s = pan_secret(card_secret, nonce)
    assert len(s) == 32
    assert s != pan_secret(card_secret, os.urandom(32))
    assert s != pan_secret(os.urandom(32), nonce)
    with pytest.raises(ProtocolError) as exc:
        pan_secret(b"short", nonce)
    assert exc.value.code_name == "ERROR_CODE_DECODING_FAILURE"


def test_blinded_account_binds_pan_expiry_and_secret() -> None:
    secret = os.urandom(32)
    pan = PAN(VISA)
    ident = blinded_account(secret, pan, "203012")
    check_blinded_account(ident, secret, pan, "203012")
    for other in (
        (secret, PAN(MASTERCARD), "203012"),
        (secret, pan, "203101"),
        (os.urandom(32), pan, "203012"),
    ):
        with pytest.raises(ProtocolError) as exc:
            check_blinded_account(ident, *other)
        assert exc.value.code_name == "ERROR_CODE_ACCOUNT_MISMATCH"
    with pytest.raises(ProtocolError) as exc:
        blinded_account(secret, pan, "2030-12")
    assert exc.value.code_name == "ERROR_CODE_DECODING_FAILURE" and "expiry" in exc.value.reason
    with pytest.raises(ProtocolError) as exc:
        blinded_account(b"short", pan, "203012")
    assert exc.value.code_name == "ERROR_CODE_DECODING_FAILURE" and "PANSecret" in exc.value.reason


def test_trans_stain_is_keyed_per_transaction() -> None:
    card_secret = os.urandom(32)
    assert trans_stain(card_secret, b"x1") != trans_stain(card_secret, b"x2")
    assert trans_stain(card_secret, b"x1") == trans_stain(card_secret, b"x1")


@pytest.mark.parametrize(
    "bad",
    [
        "203012\n",  # a regular expression's "$" also matches before a final newline
        "\u0662\u0660\u0663\u0660" + "12",  # Arabic-Indic digits are digits to Unicode
        "\uff12\uff10\uff13\uff10" + "12",  # so are fullwidth ones
        " 203012",
        "20301",
        "203013",
        "203000",
    ],
    ids=["newline", "arabic-indic", "fullwidth", "space", "short", "month-13", "month-0"],
)
def test_an_expiry_is_six_ascii_digits_and_nothing_more(bad: str) -> None:
    # A look-alike expiry blinds to another account id and is not what the ledger holds.
    with pytest.raises(ProtocolError) as exc:
        check_expiry(bad)
    assert exc.value.code_name == "ERROR_CODE_DECODING_FAILURE"
    with pytest.raises(ProtocolError) as exc:
        blinded_account(os.urandom(32), PAN(VISA), bad)
    assert exc.value.code_name == "ERROR_CODE_DECODING_FAILURE"
    assert check_expiry("203012") == "203012"
