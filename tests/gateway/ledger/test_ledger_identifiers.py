"""Ledger ids: random, prefixed, never PAN-like; hold ids sort by the time they were made."""

from __future__ import annotations

import base64
import random
import re

from gateway.ledger import new_hold_id
from gateway.ledger.identifiers import new_id, new_ordered_id

# 2026-01-01 .. 2100-01-01 in Unix milliseconds.
_NOW_MS = 1_767_225_600_000
_LATER_MS = 4_102_444_800_000


def test_ids_are_prefixed_and_distinct() -> None:
    ids = {new_id("hold") for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"hold-[a-z2-7]{24}", i) for i in ids)


def test_ids_never_carry_a_pan_like_digit_run() -> None:
    # Hex ids would: about one in forty holds a run of 13+ decimal digits.
    ids = [new_id("hold") for _ in range(10_000)] + [new_id("batch", 10) for _ in range(10_000)]
    ids += [new_hold_id() for _ in range(10_000)]
    ids += [new_ordered_id("hold", random.randrange(_NOW_MS, _LATER_MS)) for _ in range(10_000)]
    assert not [i for i in ids if re.search(r"\d{13,}", i)]


def test_hold_ids_are_ordered_prefixed_and_distinct() -> None:
    ids = {new_hold_id() for _ in range(10_000)}  # many share a millisecond
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"hold-[2-7a-z]{26}", i) for i in ids)


def test_ordered_ids_sort_by_their_millisecond_as_text_and_as_bytes() -> None:
    # Random instants cross every base32 digit boundary, including letter -> digit in
    # RFC 4648's alphabet ('z' is 25, '2' is 26), where plain base32 text sorts wrongly.
    instants = sorted({random.randrange(_NOW_MS, _LATER_MS) for _ in range(5_000)})
    instants += [i + 1 for i in instants[:50]]  # neighbours a millisecond apart
    instants = sorted(set(instants))
    ids = [new_ordered_id("hold", ms) for ms in instants]
    assert sorted(ids) == ids
    assert sorted(i.encode() for i in ids) == [i.encode() for i in ids]


def test_the_alphabet_is_what_makes_them_sort() -> None:
    # Instants whose first base32 digit is 25 and 26: RFC 4648 writes them 'z' and '2',
    # which sort the wrong way round as text.
    early, late = (25 << 43).to_bytes(6, "big"), (26 << 43).to_bytes(6, "big")
    plain = [base64.b32encode(t + bytes(10)).decode().lower() for t in (early, late)]
    assert plain[0] > plain[1]
    assert new_ordered_id("hold", 25 << 43) < new_ordered_id("hold", 26 << 43)
