"""SQLite group commit with its queue full: each caller waits its own timeout, no longer,
and closing the store still answers every caller whose work was put."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.ledger import GroupCommitConfig, SqliteLedgerStore, SqliteStoreConfig
from gateway.ledger.errors import StoreUnavailable
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import insert_probe, probe_values

# The queue's room (one operation) and how long a caller waits for room or a commit.
TIMEOUT_SECONDS = 0.5
# Callers that find the queue full at once.
CALLERS = 5


class _Stalled:
    """A store whose writer is held inside an operation and whose queue (one place) is
    full behind it, until ``release``."""

    def __init__(self, path: Path) -> None:
        config = SqliteStoreConfig(
            group_commit=GroupCommitConfig(
                max_queued=1, submit_timeout_seconds=TIMEOUT_SECONDS, linger_seconds=0
            )
        )
        self.store = SqliteLedgerStore(path, config=config)
        self.store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL)"))
        self._release = threading.Event()
        entered = threading.Event()

        def hold_writer(tx: Transaction) -> None:
            entered.set()
            self._release.wait()

        self.pool = ThreadPoolExecutor(max_workers=CALLERS + 4)
        self.first = self.pool.submit(self._execute_long, hold_writer)
        entered.wait()
        self.queued = self.pool.submit(self._execute_long, insert_probe(1))
        writer = self.store._writer
        while writer._queue.qsize() < 1:  # the one place is taken
            time.sleep(0.001)

    def _execute_long(self, work: Callable[[Transaction], object]) -> object:
        # The first two wait out the stall, not the short timeout the others get: the
        # timeout applies to each caller's wait for its commit too.
        try:
            return self.store.execute(work)
        except StoreUnavailable as exc:
            return exc

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def stalled(tmp_path: Path) -> Iterator[_Stalled]:
    held = _Stalled(tmp_path / "ledger.db")
    yield held
    held.release()
    held.pool.shutdown()
    held.store.close()


def _timed_submit(store: SqliteLedgerStore, value: int) -> tuple[float, str]:
    started = time.monotonic()
    try:
        store.execute(insert_probe(value))
        outcome = "committed"
    except StoreUnavailable as exc:
        outcome = str(exc)
    return time.monotonic() - started, outcome


def test_callers_of_a_full_queue_each_wait_one_timeout(stalled: _Stalled) -> None:
    callers = [stalled.pool.submit(_timed_submit, stalled.store, 100 + i) for i in range(CALLERS)]
    results = [f.result() for f in callers]
    assert {outcome for _, outcome in results} == {"the ledger writer's queue stayed full"}
    # Each waited for room on its own: one timeout each, not one after the other (the
    # k-th caller waited k timeouts while the put was made under the close lock).
    slowest = max(seconds for seconds, _ in results)
    assert slowest < 2 * TIMEOUT_SECONDS, results


def test_close_answers_every_caller_that_was_waiting_for_room(stalled: _Stalled) -> None:
    waiting: list[Future[tuple[float, str]]] = [
        stalled.pool.submit(_timed_submit, stalled.store, 200 + i) for i in range(2)
    ]
    time.sleep(TIMEOUT_SECONDS / 5)  # both are waiting for room
    closing = stalled.pool.submit(stalled.store.close)
    time.sleep(TIMEOUT_SECONDS / 5)
    stalled.release()
    closing.result(timeout=10)
    for future in waiting:
        _, outcome = future.result(timeout=10)
        # Put before the stop mark and committed, or told the queue stayed full: never
        # left waiting behind a writer that has stopped.
        assert outcome in {"committed", "the ledger writer's queue stayed full"}
    with pytest.raises(StoreUnavailable, match="closed"):
        stalled.store.execute(insert_probe(300))


def test_the_queued_operation_commits_once_the_writer_goes_on(
    stalled: _Stalled, tmp_path: Path
) -> None:
    stalled.release()
    assert stalled.queued.result(timeout=10) == 1
    assert probe_values(tmp_path / "ledger.db") == [1]
