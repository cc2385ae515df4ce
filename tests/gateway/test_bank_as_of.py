"""``Bank.as_of``: a copy with the request's moment, made without ``dataclasses.replace``.

The copy skips ``__init__``; that is only the same as ``replace`` while ``Bank`` has no
``__post_init__``, no field left out of ``__init__`` and nothing derived from
``as_of_ms``. These tests hold both: the copy equals ``replace``'s, and the class stays
such that it can.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from gateway.bank import Bank


def _bank(**changes: object) -> Bank:
    # Stand-ins: nothing here reads them, and ``Bank`` checks no types.
    fields: dict[str, Any] = {
        "credentials": object(),
        "trust": object(),
        "token_key": object(),
        "ledger": object(),
        "gateway_chain": (b"gateway", b"ca"),
        "refresh_revocation": lambda: None,
        "opening": None,
    }
    fields.update(changes)
    return Bank(**fields)


def test_as_of_is_replace_with_the_moment() -> None:
    bank = _bank()
    moved = bank.as_of(1_767_225_600_123)
    expected = dataclasses.replace(bank, as_of_ms=1_767_225_600_123)
    assert type(moved) is Bank
    assert moved == expected
    for field in dataclasses.fields(Bank):
        assert getattr(moved, field.name) is getattr(expected, field.name), field.name
    assert moved.as_of_time == datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)


def test_as_of_leaves_the_bank_it_was_given_alone() -> None:
    bank = _bank()
    first = bank.as_of(1_000)
    second = first.as_of(2_000)
    assert bank.as_of_ms is None and bank.as_of_time is None
    assert (first.as_of_ms, second.as_of_ms) == (1_000, 2_000)
    assert first is not bank and second is not first
    assert vars(bank) is not vars(first)


def test_the_copy_is_still_frozen_and_hashes_as_replace_does() -> None:
    bank = _bank(credentials="c", trust="t", token_key="k", ledger="l", refresh_revocation=None)
    moved = bank.as_of(5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cast(Any, moved).as_of_ms = 6
    assert hash(moved) == hash(dataclasses.replace(bank, as_of_ms=5))


def test_bank_stays_a_class_a_shallow_copy_can_move() -> None:
    # If one of these fails, ``as_of`` must build through ``__init__`` again (replace).
    assert not hasattr(Bank, "__post_init__")
    assert not hasattr(Bank, "__slots__")
    assert all(field.init for field in dataclasses.fields(Bank))
    # A cached value lives in the instance's dict, and the copy would carry it over stale.
    assert not [v for v in vars(Bank).values() if isinstance(v, functools.cached_property)]
