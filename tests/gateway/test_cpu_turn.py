"""The turn to compute inside a worker process (``gateway.cpu_turn``)."""

from __future__ import annotations

import threading

from gateway.cpu_turn import CpuTurn

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
