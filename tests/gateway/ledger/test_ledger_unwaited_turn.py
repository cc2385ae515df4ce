"""The SQLite writer and a CA write waiting on it (``CpuTurn.unwaited``, ca.db locked).

A CA write whose wait gave the worker's turn up goes on without it (on paper) and must not
wait for it while ca.db is locked; its ledger job is applied without the turn. The writer
may already be waiting for the turn for a group queued before that job: the job's arrival
ends that wait. An ordinary group still waits for a turn another call holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.cpu_turn import CpuTurn
from gateway.ledger import SqliteLedgerStore
from gateway.ledger.store import Transaction

WAIT = 5.0
# The longest a CA write's ledger call may take while another call holds the turn for WAIT.
QUICK_S = 0.5
# Long enough for the writer to look several times whether it may go on without the turn.
LOOKS_S = 0.05


@pytest.fixture
def turn() -> CpuTurn:
    return CpuTurn()


@pytest.fixture
def store(tmp_path: Path, turn: CpuTurn) -> Iterator[SqliteLedgerStore]:
    opened = SqliteLedgerStore(tmp_path / "ledger.db", cpu=turn)
    try:
        yield opened
    finally:
        opened.close()


def _holder(turn: CpuTurn, has_turn: threading.Event, release: threading.Event) -> threading.Thread:
    """Another call of the worker (a token call that does not return): holds the turn
    from as soon as it is free until ``release``."""

    def hold() -> None:
        with turn.held():
            has_turn.set()
            release.wait(WAIT)

    return threading.Thread(target=hold, daemon=True)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def _select(tx: Transaction) -> int:
    tx.one("SELECT 1")
    return 1


def _noting(seen: list[tuple[str, bool]], name: str, turn: CpuTurn) -> Callable[[Transaction], int]:
    """A job that notes, as the writer applies it, whether the writer holds the turn."""

    def work(tx: Transaction) -> int:
        seen.append((name, turn._lock._is_owned()))  # type: ignore[attr-defined]
        return _select(tx)

    return work


def _ordinary_job_behind_a_holder(
    store: SqliteLedgerStore, turn: CpuTurn
) -> tuple[list[tuple[str, bool]], list[object]]:
    """Another call holds the turn and another request's job reaches the writer: not
    applied while the holder keeps it (after the writer had time to look several times
    whether it may go on without it). What the job noted, and its answer, once the holder
    let it go."""
    has_turn, release = threading.Event(), threading.Event()
    holder = _holder(turn, has_turn, release)
    holder.start()
    assert has_turn.wait(WAIT)
    seen: list[tuple[str, bool]] = []
    answers: list[object] = []
    caller = threading.Thread(
        target=lambda: answers.append(store.execute(_noting(seen, "ordinary", turn))),
        daemon=True,
    )
    caller.start()
    _until(lambda: turn.wanting == 2 or bool(seen), "the writer never took the job")
    time.sleep(LOOKS_S)
    assert seen == [], "applied while another call holds the turn"
    release.set()
    caller.join(WAIT)
    holder.join(WAIT)
    return seen, answers


def test_a_ca_write_ends_the_writers_wait_for_the_turn_for_an_earlier_group(
    store: SqliteLedgerStore, turn: CpuTurn
) -> None:
    """An ordinary job reached the writer first, and the writer waits for the turn another
    call holds; the CA write's job, queued behind, is applied without waiting for it."""
    has_turn, release = threading.Event(), threading.Event()
    holder = _holder(turn, has_turn, release)
    seen: list[tuple[str, bool]] = []
    answers: list[object] = []
    took: list[float] = []
    held_meanwhile: list[bool] = []

    def ordinary() -> None:  # another request's ledger operation
        answers.append(store.execute(_noting(seen, "ordinary", turn)))

    other = threading.Thread(target=ordinary, daemon=True)
    with turn.held(), turn.unwaited():  # a CA write: ca.db locked
        with turn.aside():  # a token wait as it signs: the holder takes the turn
            holder.start()
            assert has_turn.wait(WAIT)
        assert (turn._depth(), turn._owed()) == (0, 1)  # on paper
        other.start()
        # holder, this write on paper, and the writer waiting for the turn
        _until(lambda: turn.wanting == 3 or bool(seen), "the writer never took the job")
        assert seen == [], "applied while another call holds the turn"
        started = time.monotonic()
        answers.append(store.execute(_noting(seen, "ca", turn)))
        took.append(time.monotonic() - started)
        held_meanwhile.append(holder.is_alive())
        release.set()
    holder.join(WAIT)
    other.join(WAIT)
    assert took[0] < QUICK_S, f"the CA write's ledger call waited {took[0]:.2f} s"
    assert held_meanwhile == [True]  # the turn was the holder's all along
    assert sorted(seen) == [("ca", False), ("ordinary", False)]
    assert answers == [1, 1]
    assert turn.wanting == 0
    assert turn._lock.acquire(blocking=False)  # nobody holds it
    turn._lock.release()


def test_a_ca_write_queued_first_is_applied_without_the_turn(
    store: SqliteLedgerStore, turn: CpuTurn
) -> None:
    has_turn, release = threading.Event(), threading.Event()
    holder = _holder(turn, has_turn, release)
    seen: list[tuple[str, bool]] = []
    with turn.held(), turn.unwaited():
        with turn.aside():
            holder.start()
            assert has_turn.wait(WAIT)
        assert store.execute(_noting(seen, "ca", turn)) == 1
        assert holder.is_alive()
        release.set()
    holder.join(WAIT)
    assert seen == [("ca", False)]


def test_an_ordinary_job_waits_for_a_turn_another_call_holds(
    store: SqliteLedgerStore, turn: CpuTurn
) -> None:
    """Only a CA write's wait spares the writer the turn: another request's job is applied
    once the turn is given back, by the writer holding it."""
    seen, answers = _ordinary_job_behind_a_holder(store, turn)
    assert seen == [("ordinary", True)]
    assert answers == [1]
    assert turn.wanting == 0


def test_a_ca_write_that_ended_leaves_the_writer_waiting_for_the_turn_again(
    store: SqliteLedgerStore, turn: CpuTurn
) -> None:
    """The CA write's wait counts only while it lasts: the next ordinary group waits."""
    with turn.unwaited():  # a write holding no turn: its job is applied at once
        assert store.execute(_select) == 1
    seen, _ = _ordinary_job_behind_a_holder(store, turn)
    assert seen == [("ordinary", True)]
