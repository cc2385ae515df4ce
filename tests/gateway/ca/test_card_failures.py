"""The count of a card's refused registrations in ca.db, by the clock: the window, the
period a card past its limit is refused, and rows that run out."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.ca.card_failures import (
    CARD_FAILURE_LIMIT,
    CARD_FAILURE_WINDOW_MS,
    CARD_REFUSAL_MS,
    card_refused,
    count_failure,
    forget_failures,
)
from gateway.ca.store import CaStore

T0 = 1_700_000_000_000
CARD = b"k" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    with closing(CaStore.open(tmp_path / "ca.db", create=True)) as opened:
        yield opened


def _fail(store: CaStore, card: bytes, at: int) -> bool:
    with store.write() as tx:
        return count_failure(tx, card, at)


def _refused(store: CaStore, card: bytes, at: int) -> bool:
    with store.read() as tx:
        return card_refused(tx, card, at)


def test_the_limit_within_a_window_refuses_the_card_for_the_refusal_period(
    store: CaStore,
) -> None:
    for n in range(1, CARD_FAILURE_LIMIT + 1):
        assert _fail(store, CARD, T0 + n) == (n == CARD_FAILURE_LIMIT)
    last = T0 + CARD_FAILURE_LIMIT
    assert _refused(store, CARD, last + CARD_REFUSAL_MS - 1)
    assert not _refused(store, CARD, last + CARD_REFUSAL_MS)


def test_refusals_in_another_window_start_the_count_again(store: CaStore) -> None:
    for n in range(CARD_FAILURE_LIMIT - 1):
        _fail(store, CARD, T0 + n)
    later = T0 + CARD_FAILURE_WINDOW_MS
    assert not _fail(store, CARD, later)
    assert not _refused(store, CARD, later)


def test_a_certified_card_forgets_its_refusals(store: CaStore) -> None:
    for n in range(CARD_FAILURE_LIMIT - 1):
        _fail(store, CARD, T0 + n)
    with store.write() as tx:
        forget_failures(tx, CARD)
    assert not _fail(store, CARD, T0 + CARD_FAILURE_LIMIT)


def test_a_requester_cycling_card_numbers_leaves_one_window_of_rows(store: CaStore) -> None:
    """Each number refused once: its row is gone once its window has passed."""
    for n in range(50):
        _fail(store, n.to_bytes(32, "big"), T0 + n)
    assert _rows(store) == 50
    _fail(store, CARD, T0 + 50 + CARD_FAILURE_WINDOW_MS)
    assert _rows(store) == 1
    # A card refused outright is kept until its refusal period has passed.
    locked = b"l" * 32
    for n in range(CARD_FAILURE_LIMIT):
        _fail(store, locked, T0 + n)
    _fail(store, CARD, T0 + 2 * CARD_FAILURE_WINDOW_MS)
    assert _refused(store, locked, T0 + 2 * CARD_FAILURE_WINDOW_MS)


def _rows(store: CaStore) -> int:
    db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM card_failures").fetchone()[0])
    finally:
        db.close()
