"""The ledger's key check (``key_check``), on each store and over the ledger service: the
first open writes it, later opens must match it, a ledger without one is checked against a
card, and workers opening a new ledger together agree on one record."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from gateway.ledger import Ledger, LedgerKeys, LedgerStore
from gateway.ledger.key_check import ForeignLedgerKeys, KeyCheck, check_ledger_keys
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, PAN_A, Backend

R = TypeVar("R")
NOW_MS = 1_700_000_000_000
# Workers of one bank opening a new ledger at once: more than two, so that losing the
# race is seen by more than one of them.
WORKERS = 3
# How long a worker waits for the others to have read: far beyond a read of an empty
# ledger, short enough that a worker that never comes fails the test rather than hangs it.
MEETING_SECONDS = 30


def _rows(backend: Backend) -> list[tuple[object, ...]]:
    return backend.raw_query("SELECT index_check, data_check, written_at_ms FROM ledger_key_check")


def _check(backend: Backend, keys: LedgerKeys) -> KeyCheck:
    store = backend.open_store()
    try:
        return check_ledger_keys(store, keys, NOW_MS)
    finally:
        store.close()


def _refused(backend: Backend, keys: LedgerKeys, reason: str) -> None:
    with pytest.raises(ForeignLedgerKeys, match=reason) as refused:
        _check(backend, keys)
    for key in (keys.data_key, keys.index_key):
        assert key.hex() not in str(refused.value) and key not in str(refused.value).encode()


def _open_card(backend: Backend, keys: LedgerKeys) -> str:
    ledger = Ledger(backend.open_store(), keys)
    try:
        return ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR).account_id
    finally:
        ledger.close()


def test_the_first_open_writes_the_check_and_later_opens_match_it(
    backend: Backend, keys: LedgerKeys
) -> None:
    assert _check(backend, keys) is KeyCheck.FIRST_KEYS
    rows = _rows(backend)
    assert len(rows) == 1 and rows[0][2] == NOW_MS
    assert _check(backend, keys) is KeyCheck.MATCHED
    assert _rows(backend) == rows


def test_other_keys_are_refused_and_nothing_is_written(backend: Backend, keys: LedgerKeys) -> None:
    _check(backend, keys)
    rows = _rows(backend)
    _refused(backend, LedgerKeys.generate(), "its data key and index key do not match")
    wrong_data = LedgerKeys(data_key=LedgerKeys.generate().data_key, index_key=keys.index_key)
    _refused(backend, wrong_data, "its data key does not match")
    wrong_index = LedgerKeys(data_key=keys.data_key, index_key=LedgerKeys.generate().index_key)
    _refused(backend, wrong_index, "its index key does not match")
    assert _rows(backend) == rows


def test_a_ledger_with_cards_and_no_check_is_checked_against_a_card(
    backend: Backend, keys: LedgerKeys
) -> None:
    account = _open_card(backend, keys)  # no check: as a ledger of an older release
    assert _rows(backend) == []
    wrong_data = LedgerKeys(data_key=LedgerKeys.generate().data_key, index_key=keys.index_key)
    _refused(backend, wrong_data, f"does not open the stored PAN of card account {account}")
    wrong_index = LedgerKeys(data_key=keys.data_key, index_key=LedgerKeys.generate().index_key)
    _refused(backend, wrong_index, f"does not give card account {account} its stored index")
    assert _rows(backend) == []
    assert _check(backend, keys) is KeyCheck.CHECKED_AGAINST_CARD
    assert len(_rows(backend)) == 1
    assert _check(backend, keys) is KeyCheck.MATCHED


def test_a_damaged_check_refuses_every_key(backend: Backend, keys: LedgerKeys) -> None:
    _check(backend, keys)
    backend.raw_execute("UPDATE ledger_key_check SET data_check = index_check")
    _refused(backend, keys, "its data key does not match")


def test_a_second_record_cannot_be_stored(backend: Backend, keys: LedgerKeys) -> None:
    _check(backend, keys)
    with pytest.raises(Exception, match=r"(?i)constraint"):
        backend.raw_execute(
            "INSERT INTO ledger_key_check (id, index_check, data_check, written_at_ms)"
            " SELECT 2, index_check, data_check, written_at_ms FROM ledger_key_check"
        )


class _MeetAfterRead(LedgerStore):
    """A real store whose first read waits for every other worker's first read: each
    finds the ledger without a check, and all write one at once."""

    def __init__(self, store: LedgerStore, meeting: threading.Barrier) -> None:
        self._store = store
        self._meeting: threading.Barrier | None = meeting

    def read(self, query: Callable[[Transaction], R]) -> R:
        found = self._store.read(query)
        if self._meeting is not None:
            self._meeting.wait(timeout=MEETING_SECONDS)
            self._meeting = None
        return found

    def execute(self, work: Callable[[Transaction], R]) -> R:
        return self._store.execute(work)

    def close(self) -> None:
        self._store.close()


def _first_opens(backend: Backend, each: list[LedgerKeys]) -> list[KeyCheck | ForeignLedgerKeys]:
    """``check_ledger_keys`` by one worker per key pair in ``each``, all at once."""
    meeting = threading.Barrier(len(each))
    stores = [_MeetAfterRead(backend.open_store(), meeting) for _ in each]

    def open_with(store: LedgerStore, keys: LedgerKeys) -> KeyCheck | ForeignLedgerKeys:
        try:
            return check_ledger_keys(store, keys, NOW_MS)
        except ForeignLedgerKeys as exc:
            return exc

    try:
        with ThreadPoolExecutor(len(each)) as pool:
            return list(pool.map(open_with, stores, each))
    finally:
        for store in stores:
            store.close()


def test_workers_opening_a_new_ledger_together_agree(backend: Backend, keys: LedgerKeys) -> None:
    outcomes = _first_opens(backend, [keys] * WORKERS)
    # Each wrote its own record (its own nonce); one stayed, and every one matched it.
    assert sorted(o.name for o in outcomes if isinstance(o, KeyCheck)) == sorted(
        ["FIRST_KEYS"] + ["MATCHED"] * (WORKERS - 1)
    )
    assert len(_rows(backend)) == 1
    assert _check(backend, keys) is KeyCheck.MATCHED


def test_of_two_key_pairs_opening_a_new_ledger_together_one_is_refused(backend: Backend) -> None:
    pairs = [LedgerKeys.generate(), LedgerKeys.generate()]
    outcomes = _first_opens(backend, pairs)
    assert sum(o is KeyCheck.FIRST_KEYS for o in outcomes) == 1
    assert sum(isinstance(o, ForeignLedgerKeys) for o in outcomes) == 1
    assert len(_rows(backend)) == 1
