"""The count of a card's refused registrations in ca.db, by the clock: how long a refusal
counts, the period a card at its limit is refused, a guesser pacing itself, and rows that
run out."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.ca.card_failures import (
    CARD_FAILURE_LIMIT,
    CARD_FAILURE_MEMORY_MS,
    CARD_REFUSAL_MS,
    card_refused,
    count_failure,
    forget_failures,
    release,
)
from gateway.ca.store import CaStore

T0 = 1_700_000_000_000
CARD = b"k" * 32
DAY_MS = 24 * 60 * 60 * 1000
# The expiry months a guesser tries: five years of them.
EXPIRY_MONTHS = 60


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


def test_the_limit_refuses_the_card_for_the_refusal_period(store: CaStore) -> None:
    for n in range(1, CARD_FAILURE_LIMIT + 1):
        assert _fail(store, CARD, T0 + n) == (n == CARD_FAILURE_LIMIT)
    last = T0 + CARD_FAILURE_LIMIT
    assert _refused(store, CARD, last + CARD_REFUSAL_MS - 1)
    assert not _refused(store, CARD, last + CARD_REFUSAL_MS)


def test_a_guesser_trying_fewer_than_the_limit_a_day_is_refused_outright(
    store: CaStore,
) -> None:
    """Four wrong expiry months a day: the count must not start again with the calendar.
    Counted per day, all sixty months were tried in fifteen days and none refused outright."""
    tried, first_refused_day = 0, None
    for day in range(EXPIRY_MONTHS):
        for n in range(CARD_FAILURE_LIMIT - 1):
            at = T0 + day * DAY_MS + n * 1000
            if _refused(store, CARD, at):
                first_refused_day = day if first_refused_day is None else first_refused_day
                continue
            _fail(store, CARD, at)
            tried += 1
    assert first_refused_day == 1  # the fifth try, on the second day, hit the limit
    # Past the limit, one try per refusal period: the months take the better part of a year.
    assert tried <= CARD_FAILURE_LIMIT + EXPIRY_MONTHS * DAY_MS // CARD_REFUSAL_MS + 1


def test_waiting_out_the_refusal_period_does_not_clear_the_count(store: CaStore) -> None:
    for n in range(CARD_FAILURE_LIMIT):
        _fail(store, CARD, T0 + n)
    after = T0 + CARD_FAILURE_LIMIT + CARD_REFUSAL_MS
    assert not _refused(store, CARD, after)
    assert _fail(store, CARD, after)  # one more wrong try: refused outright again
    assert _refused(store, CARD, after + CARD_REFUSAL_MS - 1)


def test_refusals_further_apart_than_the_memory_start_the_count_again(store: CaStore) -> None:
    for n in range(CARD_FAILURE_LIMIT - 1):
        _fail(store, CARD, T0 + n)
    later = T0 + CARD_FAILURE_LIMIT - 2 + CARD_FAILURE_MEMORY_MS
    assert not _fail(store, CARD, later)
    assert not _refused(store, CARD, later)


def test_a_certified_card_forgets_its_refusals(store: CaStore) -> None:
    for n in range(CARD_FAILURE_LIMIT - 1):
        _fail(store, CARD, T0 + n)
    with store.write() as tx:
        forget_failures(tx, CARD)
    assert not _fail(store, CARD, T0 + CARD_FAILURE_LIMIT)


def test_a_released_card_is_no_longer_refused(store: CaStore) -> None:
    for n in range(CARD_FAILURE_LIMIT):
        _fail(store, CARD, T0 + n)
    with store.write() as tx:
        counted = release(tx, CARD)
        assert release(tx, CARD) is None
    assert counted is not None and counted.failures == CARD_FAILURE_LIMIT
    assert counted.window_start_ms == T0
    assert not _refused(store, CARD, T0 + CARD_FAILURE_LIMIT)
    assert not _fail(store, CARD, T0 + CARD_FAILURE_LIMIT)  # counted from one again


def test_a_requester_cycling_card_numbers_leaves_one_memory_of_rows(store: CaStore) -> None:
    """Each number refused once: its row is gone once a refusal no longer counts."""
    for n in range(50):
        _fail(store, n.to_bytes(32, "big"), T0 + n)
    assert _rows(store) == 50
    _fail(store, CARD, T0 + 50 + CARD_FAILURE_MEMORY_MS)
    assert _rows(store) == 1
    # A card refused outright stays refused while its row lives.
    locked = b"l" * 32
    for n in range(CARD_FAILURE_LIMIT):
        _fail(store, locked, T0 + n)
    _fail(store, CARD, T0 + CARD_REFUSAL_MS - 1)
    assert _refused(store, locked, T0 + CARD_REFUSAL_MS - 1)


def _rows(store: CaStore) -> int:
    db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM card_failures").fetchone()[0])
    finally:
        db.close()


def test_a_card_that_is_not_lockable_is_counted_but_never_locked(store: CaStore) -> None:
    """A card with an enrolment code: every refusal written as any other card's, none locks."""
    for n in range(1, 3 * CARD_FAILURE_LIMIT):
        with store.write() as tx:
            assert not count_failure(tx, CARD, T0 + n, lockable=False)
    assert not _refused(store, CARD, T0 + 3 * CARD_FAILURE_LIMIT)
    with store.read() as tx:
        counted = tx.card_failures(CARD)
    assert counted is not None and counted.failures == 3 * CARD_FAILURE_LIMIT - 1
