"""Hold ids are written without ``base64``: the text must be exactly what it was.

Hold ids are stored in ledgers and shown to users, and were RFC 4648 base32 of the time
and the random bytes, padding dropped, in the ordered alphabet. ``new_ordered_id`` now
writes the same 16 bytes from a table of digit pairs; here both ways must give one text.
"""

from __future__ import annotations

import base64
import random
import secrets

import pytest

from gateway.ledger.identifiers import new_ordered_id

# RFC 4648 base32 with its letters written after its digits: the hold ids' alphabet.
_RFC_TO_ORDERED = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"234567abcdefghijklmnopqrstuvwxyz"
)


def _reference(prefix: str, millis: int, random_part: bytes) -> str:
    raw = millis.to_bytes(6, "big") + random_part
    return f"{prefix}-{base64.b32encode(raw).rstrip(b'=').translate(_RFC_TO_ORDERED).decode()}"


def _with_random(monkeypatch: pytest.MonkeyPatch, random_part: bytes) -> None:
    def token_bytes(count: int) -> bytes:
        assert count == len(random_part)
        return random_part

    monkeypatch.setattr(secrets, "token_bytes", token_bytes)


def test_the_text_is_base32s_for_random_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(secrets.randbits(64))
    for _ in range(50_000):
        millis, random_part = rng.getrandbits(48), rng.randbytes(10)
        _with_random(monkeypatch, random_part)
        assert new_ordered_id("hold", millis) == _reference("hold", millis, random_part)


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x55, 0xAA])
@pytest.mark.parametrize("millis", [0, 1, (1 << 48) - 1, 1_767_225_600_000])
def test_the_text_is_base32s_at_the_edges(
    monkeypatch: pytest.MonkeyPatch, millis: int, fill: int
) -> None:
    random_part = bytes([fill]) * 10
    _with_random(monkeypatch, random_part)
    assert new_ordered_id("hold", millis) == _reference("hold", millis, random_part)


def test_the_random_bytes_still_come_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def token_bytes(count: int) -> bytes:
        asked.append(count)
        return bytes(count)

    monkeypatch.setattr(secrets, "token_bytes", token_bytes)
    assert new_ordered_id("hold", 7) == _reference("hold", 7, bytes(10))
    assert asked == [10]


@pytest.mark.parametrize("millis", [-1, 1 << 48])
def test_an_instant_outside_six_bytes_is_still_refused(millis: int) -> None:
    with pytest.raises(OverflowError):
        new_ordered_id("hold", millis)
