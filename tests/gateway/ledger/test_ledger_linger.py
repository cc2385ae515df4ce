"""The group-commit writer waits briefly for requests its process is still computing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.cpu_turn import PROCESS_TURN
from gateway.ledger import CommitStats, GroupCommitConfig, SqliteLedgerStore, SqliteStoreConfig
from tests.gateway.ledger.ledger_support import insert_probe, probe_values

WAIT = 10.0
# Long enough that a test would time out if the writer lingered when it should not.
LONG_LINGER = 60.0


class Store:
    """A SQLite store with the given linger, its commits, and calls run in threads."""

    def __init__(self, path: Path, linger: float) -> None:
        self.path = path
        self.commits: list[CommitStats] = []
        config = SqliteStoreConfig(group_commit=GroupCommitConfig(linger_seconds=linger))
        self.store = SqliteLedgerStore(path, config=config, observer=self.commits.append)
        self.store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL)"))
        self.commits.clear()
        self.results: dict[int, object] = {}

    def insert_in_thread(self, value: int, *, computing: bool = False) -> threading.Thread:
        """Insert ``value`` from a new thread (holding the turn, as a request does, if
        ``computing``)."""

        def call() -> None:
            try:
                if computing:
                    with PROCESS_TURN.held():
                        self.results[value] = self.store.execute(insert_probe(value))
                else:
                    self.results[value] = self.store.execute(insert_probe(value))
            except Exception as exc:
                self.results[value] = exc

        thread = threading.Thread(target=call)
        thread.start()
        return thread

    def wait_until_taken(self) -> None:
        """Wait until the writer has taken everything queued."""
        deadline = time.monotonic() + WAIT
        while self.store._writer._queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.store._writer._queue.qsize() == 0

    def values(self) -> list[int]:
        return probe_values(self.path)


@contextmanager
def computing() -> Iterator[threading.Event]:
    """Another request of this process computes (holds the turn) until the event is set."""
    done = threading.Event()
    holding = threading.Event()

    def request() -> None:
        with PROCESS_TURN.held():
            holding.set()
            done.wait(WAIT * 3)

    thread = threading.Thread(target=request)
    thread.start()
    assert holding.wait(WAIT)
    try:
        yield done
    finally:
        done.set()
        thread.join(WAIT)


def test_a_request_still_computing_joins_the_group(tmp_path: Path) -> None:
    store = Store(tmp_path / "ledger.db", LONG_LINGER)
    with computing() as finished:
        first = store.insert_in_thread(1)
        store.wait_until_taken()
        time.sleep(0.05)
        assert 1 not in store.results  # the writer waits for the computing request
        finished.set()  # it finishes computing and submits from its own turn
        second = store.insert_in_thread(2, computing=True)
        first.join(WAIT)
        second.join(WAIT)
    assert store.results == {1: 1, 2: 2}
    assert [c.operations for c in store.commits] == [2]
    assert store.values() == [1, 2]
    store.store.close()


def test_a_lone_request_is_not_held_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "ledger.db", LONG_LINGER)
    thread = store.insert_in_thread(1)
    thread.join(WAIT)  # nobody computes: it commits at once, not after the linger
    assert store.results == {1: 1}
    assert [c.operations for c in store.commits] == [1]
    store.store.close()


def test_the_wait_is_bounded_by_the_linger(tmp_path: Path) -> None:
    # The other request stops computing without submitting anything (it was declined, or
    # it was not a ledger call): the writer must not wait out a long linger for it.
    store = Store(tmp_path / "ledger.db", 0.05)
    with computing() as finished:
        thread = store.insert_in_thread(1)
        store.wait_until_taken()
        time.sleep(0.2)
        finished.set()
        thread.join(WAIT)  # with LONG_LINGER this would take a minute
    assert store.results == {1: 1}
    assert [c.operations for c in store.commits] == [1]
    store.store.close()


def test_closing_while_the_writer_waits_commits_the_group(tmp_path: Path) -> None:
    store = Store(tmp_path / "ledger.db", LONG_LINGER)
    with computing() as finished:
        thread = store.insert_in_thread(1)
        store.wait_until_taken()
        closing = threading.Thread(target=store.store.close)
        closing.start()
        time.sleep(0.05)
        finished.set()  # the writer needs the turn to apply the group
        closing.join(WAIT)
        thread.join(WAIT)
    assert not closing.is_alive()
    assert store.results == {1: 1}
    assert store.values() == [1]
