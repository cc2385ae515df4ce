"""Ledger ids: random, prefixed, and never PAN-like."""

from __future__ import annotations

import re

from gateway.ledger.identifiers import new_id


def test_ids_are_prefixed_and_distinct() -> None:
    ids = {new_id("hold") for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"hold-[a-z2-7]{24}", i) for i in ids)


def test_ids_never_carry_a_pan_like_digit_run() -> None:
    # Hex ids would: about one in forty holds a run of 13+ decimal digits.
    ids = [new_id("hold") for _ in range(10_000)] + [new_id("batch", 10) for _ in range(10_000)]
    assert not [i for i in ids if re.search(r"\d{13,}", i)]
