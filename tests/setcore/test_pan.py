"""PAN handling: Luhn, masking, never showing digits, PANSecret and the blinded account."""

from __future__ import annotations

import os
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from setcore.errors import ProtocolError
from setcore.pan import (
    PAN,
    InvalidPAN,
    blinded_account,
    check_blinded_account,
    check_expiry,
    luhn_valid,
    pan_secret,
    trans_stain,
)
from tests.cards import MASTERCARD, VISA, wrong_check_digit


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
    with pytest.raises(ProtocolError):
        blinded_account(os.urandom(32), PAN(VISA), bad)
    assert check_expiry("203012") == "203012"
