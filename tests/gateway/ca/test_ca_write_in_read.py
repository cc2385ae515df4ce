"""A CA write begun inside the same thread's read of the store is refused as a bug.

Reads and writes have connections of their own. A write inside the thread's read went
through on the write's connection while the read's snapshot stayed the older one (a
decision read there is stale to the write made on it), and it took the reads' lock, then
the write's, where ``close`` takes them the other way round: the two could wait for each
other for ever. It is refused (``StoreBug``), as it was on one connection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.ca import CaStore, StoreError
from gateway.ca.errors import StoreBug

from .test_ca_store_waits import _session


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    with closing(CaStore.open(tmp_path / "ca.db", create=True)) as opened:
        yield opened


def test_a_write_inside_a_read_is_refused_and_writes_nothing(store: CaStore) -> None:
    with pytest.raises(StoreBug, match="inside the same thread's read"), store.read() as outer:
        assert outer.session(b"N" * 16) is None
        with store.write() as tx:
            tx.put_session(_session(b"N" * 16))  # pragma: no cover - never reached
    with store.read() as tx:
        assert tx.session(b"N" * 16) is None


def test_close_ends_with_a_write_tried_inside_a_read(tmp_path: Path) -> None:
    # Not the fixture's: were the two to wait for each other, its close would too.
    store = CaStore.open(tmp_path / "ca.db", create=True)
    reading = threading.Event()
    closing_now = threading.Event()
    outcome: list[object] = []

    def request() -> None:
        try:
            with store.read():
                reading.set()
                closing_now.wait(2)  # close() is waiting for the read meanwhile
                with store.write() as tx:
                    tx.put_session(_session(b"C" * 16))
            outcome.append("written")
        except Exception as exc:  # the test's asserts judge it
            outcome.append(exc)

    worker = threading.Thread(target=request, daemon=True)
    worker.start()
    assert reading.wait(2)
    closer = threading.Thread(target=store.close, daemon=True)
    closer.start()
    closer.join(0.3)
    closing_now.set()
    worker.join(3)
    closer.join(3)
    assert not worker.is_alive() and not closer.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], StoreBug)
    with pytest.raises(StoreError, match="closed"), store.read():
        pass  # pragma: no cover - never entered


def test_a_write_after_a_read_or_beside_anothers_is_made(store: CaStore) -> None:
    """Only the thread's own read refuses a write: one after it, or in another thread
    while this one reads, goes through."""
    with store.read() as tx:
        assert tx.session(b"A" * 16) is None
    with store.write() as tx:
        tx.put_session(_session(b"A" * 16))
    failures: list[BaseException] = []

    def write_beside() -> None:
        try:
            with store.write() as tx:
                tx.put_session(_session(b"B" * 16))
        except BaseException as exc:  # the test's asserts judge it
            failures.append(exc)

    with store.read():
        beside = threading.Thread(target=write_beside)
        beside.start()
        beside.join(5)
    assert not failures
    with store.read() as tx:
        assert tx.session(b"A" * 16) is not None and tx.session(b"B" * 16) is not None


def test_a_read_inside_a_write_is_still_refused(store: CaStore) -> None:
    """The other way round stays the bug SQLite names (a transaction inside another)."""
    with pytest.raises(StoreBug), store.write() as tx:
        tx.put_session(_session(b"R" * 16))
        with store.read():
            pass  # pragma: no cover - never entered
    with store.read() as tx:
        assert tx.session(b"R" * 16) is None
