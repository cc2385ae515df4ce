"""The tiny DER codec: round trips and strict refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from setcore.pki import der


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_enumerated_round_trip(value: int) -> None:
    assert der.parse_enumerated(der.read_only(der.enumerated(value), der.ENUMERATED)) == value


@given(st.text(max_size=300))
def test_utf8_round_trip(text: str) -> None:
    assert der.parse_utf8(der.read_only(der.utf8_string(text), der.UTF8_STRING)) == text


def test_known_encodings() -> None:
    assert der.enumerated(0) == bytes.fromhex("0a0100")
    assert der.enumerated(128) == bytes.fromhex("0a020080")
    assert der.boolean(True) == bytes.fromhex("0101ff")
    assert der.utf8_string("a" * 200)[:3] == bytes.fromhex("0c81c8")
    assert der.sequence(der.boolean(False)) == bytes.fromhex("3003010100")


@pytest.mark.parametrize(
    ("encoded", "tag", "message"),
    [
        ("0a0100ff", der.ENUMERATED, "trailing"),
        ("0a8101ff", der.ENUMERATED, "non-minimal DER length"),
        ("0a80", der.ENUMERATED, "indefinite"),
        ("0a05", der.ENUMERATED, "truncated DER value"),
        ("0c0141", der.ENUMERATED, "expected tag"),
        ("0a", der.ENUMERATED, "truncated DER header"),
    ],
)
def test_read_only_refuses(encoded: str, tag: int, message: str) -> None:
    with pytest.raises(der.DerError, match=message):
        der.read_only(bytes.fromhex(encoded), tag)


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "length"), ("80", "negative"), ("0001", "non-minimal"), ("0102030405", "length")],
)
def test_enumerated_refuses(content: str, message: str) -> None:
    with pytest.raises(der.DerError, match=message):
        der.parse_enumerated(bytes.fromhex(content))


def test_boolean_must_be_der() -> None:
    assert der.parse_boolean(b"\xff") is True
    assert der.parse_boolean(b"\x00") is False
    with pytest.raises(der.DerError, match="0x00 or 0xFF"):
        der.parse_boolean(b"\x01")


def test_oversized_value_refused() -> None:
    with pytest.raises(der.DerError, match="too large"):
        der.read(der.encode(der.OCTET_STRING, b"x" * der.MAX_VALUE_BYTES))


def test_invalid_utf8_refused() -> None:
    with pytest.raises(der.DerError, match="UTF-8"):
        der.parse_utf8(b"\xff\xfe")
