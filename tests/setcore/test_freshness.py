"""Identifiers and freshness: the date window both ways, ids, labels, echoed challenges."""

from __future__ import annotations

import os

import pytest

from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import (
    FRESHNESS_WINDOW_MS,
    ID_BYTES,
    MAX_LID_BYTES,
    check_date,
    check_echo,
    check_id,
    check_lid,
    check_rrpid,
    new_id,
    now_ms,
)

NOW = 1_700_000_000_000


def _code(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(ProtocolError) as exc:
        call(*args, **kwargs)  # type: ignore[operator]
    return ErrorCode.Name(exc.value.code)


@pytest.mark.parametrize("offset", [-FRESHNESS_WINDOW_MS, -1, 0, 1, FRESHNESS_WINDOW_MS])
def test_a_date_inside_the_window_either_way_is_fresh(offset: int) -> None:
    # A peer's clock may run behind ours or ahead of it by up to the window.
    check_date(NOW + offset, NOW)


def test_a_date_just_outside_the_window_is_refused_with_its_direction() -> None:
    assert _code(check_date, NOW - FRESHNESS_WINDOW_MS - 1, NOW) == "ERROR_CODE_MESSAGE_TOO_OLD"
    assert _code(check_date, NOW + FRESHNESS_WINDOW_MS + 1, NOW) == "ERROR_CODE_MESSAGE_TOO_NEW"
    assert _code(check_date, 0, NOW) == "ERROR_CODE_MESSAGE_TOO_OLD"  # an unset date
    assert _code(check_date, NOW + 1001, NOW, window_ms=1000) == "ERROR_CODE_MESSAGE_TOO_NEW"


def test_now_is_wall_clock_milliseconds() -> None:
    import time

    before = time.time_ns() // 1_000_000
    assert before <= now_ms() <= before + 60_000


def test_ids_are_32_fresh_bytes() -> None:
    first, second = new_id(), new_id()
    assert len(first) == ID_BYTES == 32 and first != second
    check_id(first, "RRPID")
    for bad in (b"", first[:-1], first + b"\x00"):
        assert _code(check_id, bad, "RRPID") == "ERROR_CODE_DECODING_FAILURE"


def test_local_labels_are_short_and_present_when_required() -> None:
    check_lid(b"order-1", "LID-M")
    check_lid(b"", "LID-M", required=False)
    check_lid(b"x" * MAX_LID_BYTES, "LID-M")
    assert _code(check_lid, b"", "LID-M") == "ERROR_CODE_DECODING_FAILURE"
    assert _code(check_lid, b"x" * (MAX_LID_BYTES + 1), "LID-M") == "ERROR_CODE_DECODING_FAILURE"
    oversize = b"x" * (MAX_LID_BYTES + 1)
    assert _code(check_lid, oversize, "LID-M", required=False) == "ERROR_CODE_DECODING_FAILURE"


def test_a_challenge_must_come_back_exactly() -> None:
    challenge = os.urandom(32)
    check_echo(challenge, bytes(challenge), "Chall-C")
    for other in (b"", challenge[:-1], challenge + b"\x00", os.urandom(32)):
        assert _code(check_echo, challenge, other, "Chall-C") == "ERROR_CODE_CHALLENGE_MISMATCH"


def test_a_response_must_answer_our_rrpid() -> None:
    rrpid = new_id()
    check_rrpid(rrpid, bytes(rrpid))
    for other in (b"", new_id()):
        assert _code(check_rrpid, rrpid, other) == "ERROR_CODE_UNKNOWN_RRPID"
