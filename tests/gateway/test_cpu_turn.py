"""The turn to compute inside a worker process (``gateway.cpu_turn``)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from gateway.ca.store import CaStore
from gateway.cpu_turn import PROCESS_TURN, CpuTurn, TurnNotFree, holding
from gateway.ledger import GroupCommitConfig, SqliteLedgerStore, SqliteStoreConfig

WAIT = 2.0


def _try_in_another_thread(turn: CpuTurn, timeout: float) -> bool:
    """Whether another thread gets the turn within ``timeout`` seconds."""
    got = threading.Event()
    done = threading.Event()

    def other() -> None:
        with turn.held():
            got.set()
            done.wait(WAIT)

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    result = got.wait(timeout)
    done.set()  # a thread still waiting takes the turn later, when it is free, and leaves
    if result:
        thread.join(WAIT)
    return result


def test_held_keeps_other_threads_out() -> None:
    turn = CpuTurn()
    with turn.held():
        assert not _try_in_another_thread(turn, 0.1)
    assert _try_in_another_thread(turn, WAIT)


def test_aside_lets_another_thread_compute_and_takes_the_turn_back() -> None:
    turn = CpuTurn()
    with turn.held(), turn.held():  # re-entrant: nested twice
        with turn.aside():
            assert _try_in_another_thread(turn, WAIT)
        assert not _try_in_another_thread(turn, 0.1)  # ours again, at full depth
    assert _try_in_another_thread(turn, WAIT)


def test_aside_without_the_turn_does_nothing() -> None:
    turn = CpuTurn()
    with turn.aside():
        pass
    with turn.held():
        assert not _try_in_another_thread(turn, 0.1)


def test_aside_waits_for_the_turn_before_going_on() -> None:
    turn = CpuTurn()
    inside = threading.Event()
    leave = threading.Event()
    order: list[str] = []

    def other() -> None:
        with turn.held():
            inside.set()
            leave.wait(WAIT)
            order.append("other done")

    with turn.held():
        thread = threading.Thread(target=other, daemon=True)
        with turn.aside():
            thread.start()
            assert inside.wait(WAIT)
            threading.Timer(0.05, leave.set).start()
        order.append("back")  # only once the other thread has given the turn up
    thread.join(WAIT)
    assert order == ["other done", "back"]


def test_holding_a_free_lock_keeps_the_turn() -> None:
    turn, lock = CpuTurn(), threading.Lock()
    with turn.held(), holding(lock, turn):
        assert lock.locked()
        assert not _try_in_another_thread(turn, 0.1)
    assert not lock.locked()


def test_holding_a_taken_lock_waits_without_the_turn() -> None:
    turn, lock = CpuTurn(), threading.Lock()
    got = threading.Event()
    lock.acquire()

    def waiter() -> None:
        with turn.held(), holding(lock, turn):
            got.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert _try_in_another_thread(turn, WAIT)  # the waiter gave the turn up
    lock.release()
    assert got.wait(WAIT)
    thread.join(WAIT)


def test_a_merchant_registration_and_a_revocation_check_do_not_wait_for_each_other(
    tmp_path: Path,
) -> None:
    # Request A holds the turn and the CA store's lock, and opens a ledger account inside
    # it (a merchant's registration does): its commit waits for the ledger's write lock,
    # which another process holds for a moment. Request B reads the CA store meanwhile
    # (every authorization's revocation check may). B must wait for the CA store without
    # the turn, or the ledger writer could never apply A's operation.
    ca_store = CaStore.open(tmp_path / "ca.db", create=True)
    config = SqliteStoreConfig(group_commit=GroupCommitConfig(submit_timeout_seconds=3.0))
    ledger_store = SqliteLedgerStore(tmp_path / "ledger.db", config=config)
    a_inside, b_done = threading.Event(), threading.Event()
    a_result: list[object] = []
    lock_fd = os.open(tmp_path / "ledger.db.write-lock", os.O_RDWR)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)  # "another process" commits for a while

    def request_a() -> None:
        with PROCESS_TURN.held(), ca_store.write():
            a_inside.set()
            a_result.append(ledger_store.execute(lambda tx: tx.run("CREATE TABLE t (x)")))

    def request_b() -> None:
        with PROCESS_TURN.held(), ca_store.read() as tx:
            tx.latest_bci_sequence()
        b_done.set()

    # The thread behind each change of the turn's count (the sink runs in that thread).
    changes: list[int | None] = []
    PROCESS_TURN.publish(lambda _wanting: changes.append(threading.get_ident()))
    try:
        first = threading.Thread(target=request_a, daemon=True)
        first.start()
        assert a_inside.wait(WAIT)
        second = threading.Thread(target=request_b, daemon=True)
        second.start()
        # B takes the turn A gave up (one change), finds the CA store taken and steps
        # aside to wait for it (a second): only then is the race set. A B that waited
        # for the store with the turn never makes the second, and deadlocks below.
        deadline = time.monotonic() + WAIT
        while changes.count(second.ident) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        b_waited_aside = changes.count(second.ident) >= 2
    finally:
        PROCESS_TURN.publish(None)
        os.close(lock_fd)  # the other process is done
    first.join(WAIT)
    second.join(WAIT)
    # Checked before closing: had they deadlocked, closing the store would wait forever.
    assert not first.is_alive() and not second.is_alive(), "the two requests deadlocked"
    assert b_waited_aside, "B never waited for the CA store: the race was not set up"
    assert a_result == [-1]  # A's operation committed (CREATE TABLE changes no row)
    assert b_done.is_set()
    ledger_store.close()


def test_wanting_counts_the_holder_and_the_waiters_but_not_a_thread_aside() -> None:
    turn = CpuTurn()
    assert turn.wanting == 0
    waiter_in = threading.Event()
    with turn.held():
        with turn.held():  # nested: still one thread
            assert turn.wanting == 1

        def waiter() -> None:
            with turn.held():
                waiter_in.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        deadline = time.monotonic() + WAIT
        while turn.wanting < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert turn.wanting == 2  # the holder and the waiter
        with turn.aside():  # this thread waits for something else: only the other wants
            assert waiter_in.wait(WAIT)
            thread.join(WAIT)
            assert turn.wanting == 0
        assert turn.wanting == 1
    assert turn.wanting == 0


def test_a_bounded_wait_for_a_taken_turn_gives_up_and_is_no_longer_counted() -> None:
    turn = CpuTurn()
    failed: list[BaseException] = []
    given_up = threading.Event()

    def waiter() -> None:
        try:
            with turn.held(within=0.1):
                pass
        except TurnNotFree as exc:
            failed.append(exc)
        given_up.set()

    with turn.held():
        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert given_up.wait(WAIT), "the bounded wait did not end while the turn was held"
        assert turn.wanting == 1  # the holder only
    thread.join(WAIT)
    assert len(failed) == 1
    with turn.held(within=0.0):  # free: taken at once, even without waiting at all
        assert not _try_in_another_thread(turn, 0.1)


def test_a_bounded_wait_in_the_thread_that_holds_the_turn_never_fails() -> None:
    turn = CpuTurn()
    with turn.held(), turn.held(within=0.0):  # re-entrant: already ours
        assert turn.wanting == 1
    with pytest.raises(ZeroDivisionError), turn.held(within=0.0):
        raise ZeroDivisionError  # the turn is given back however the block ends
    assert _try_in_another_thread(turn, WAIT)
