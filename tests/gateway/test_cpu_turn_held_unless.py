"""``CpuTurn.held_unless`` (a wait for the turn another thread can end) and the levels a
write gone on without the turn (on paper) takes for real again."""

from __future__ import annotations

import threading
import time

from gateway.cpu_turn import CpuTurn

WAIT = 5.0
EVERY = 0.002


def _holder(turn: CpuTurn, has_turn: threading.Event, release: threading.Event) -> threading.Thread:
    def hold() -> None:
        with turn.held():
            has_turn.set()
            release.wait(WAIT)

    return threading.Thread(target=hold, daemon=True)


def _free(turn: CpuTurn) -> bool:
    """Whether another thread can take the turn now."""
    taken: list[bool] = []

    def probe() -> None:
        taken.append(turn._lock.acquire(blocking=False))
        if taken[-1]:
            turn._lock.release()

    prober = threading.Thread(target=probe)
    prober.start()
    prober.join(WAIT)
    return taken == [True]


def _owned(turn: CpuTurn) -> bool:
    return bool(turn._lock._is_owned())  # type: ignore[attr-defined]


def test_a_free_turn_is_held_for_the_block() -> None:
    turn = CpuTurn()
    inside: list[tuple[int, bool, int]] = []
    with turn.held_unless(lambda: True, EVERY):  # given up, but the turn is free: taken
        inside.append((turn._depth(), _owned(turn), turn.wanting))
    assert inside == [(1, True, 1)]
    assert (turn._depth(), turn.wanting) == (0, 0)
    assert _free(turn)


def test_a_taken_turn_is_waited_for_while_nobody_gives_up() -> None:
    turn = CpuTurn()
    has_turn, release = threading.Event(), threading.Event()
    holder = _holder(turn, has_turn, release)
    holder.start()
    assert has_turn.wait(WAIT)
    timer = threading.Timer(0.2, release.set)
    timer.start()
    asked: list[int] = []

    def given_up() -> bool:
        asked.append(1)
        return False

    started = time.monotonic()
    with turn.held_unless(given_up, EVERY):
        waited = time.monotonic() - started
        assert _owned(turn)
        assert turn._depth() == 1
    holder.join(WAIT)
    timer.join(WAIT)
    assert waited >= 0.15
    assert len(asked) > 2  # asked again as the wait went on
    assert turn.wanting == 0
    assert _free(turn)


def test_a_wait_for_a_taken_turn_ends_once_given_up() -> None:
    turn = CpuTurn()
    has_turn, release = threading.Event(), threading.Event()
    holder = _holder(turn, has_turn, release)
    holder.start()
    assert has_turn.wait(WAIT)
    give_up = threading.Event()
    timer = threading.Timer(0.1, give_up.set)
    timer.start()
    wanting: list[int] = []
    started = time.monotonic()
    with turn.held_unless(give_up.is_set, EVERY):
        waited = time.monotonic() - started
        assert not _owned(turn)
        assert turn._depth() == 0
        wanting.append(turn.wanting)  # only the holder's: going on without it is no demand
        assert holder.is_alive()
    release.set()
    holder.join(WAIT)
    timer.join(WAIT)
    assert 0.05 <= waited < 1.0
    assert wanting == [1]
    assert turn.wanting == 0
    assert _free(turn)


def test_a_turn_already_held_is_held_again_without_asking() -> None:
    turn = CpuTurn()

    def never() -> bool:
        raise AssertionError("asked although the turn is this thread's")

    with turn.held(), turn.held_unless(never, EVERY):
        assert turn._depth() == 2
    assert turn._depth() == 0
    assert _free(turn)


def test_a_write_on_paper_takes_the_turn_on_paper_without_waiting() -> None:
    turn = CpuTurn()
    has_turn, release = threading.Event(), threading.Event()
    holder = _holder(turn, has_turn, release)
    with turn.held(), turn.unwaited():
        with turn.aside():
            holder.start()
            assert has_turn.wait(WAIT)
        with turn.held_unless(lambda: False, EVERY):
            assert (turn._depth(), turn._owed()) == (0, 2)
        assert (turn._depth(), turn._owed()) == (0, 1)
        release.set()
    holder.join(WAIT)
    assert (turn._depth(), turn._owed()) == (0, 0)
    assert _free(turn)


def test_a_helpers_turn_taken_for_real_inside_is_given_back_whole() -> None:
    """A helper's ``held`` entered while a write is on paper, with a wait inside that takes
    the free turn back for real: the ``held``'s end gives a real level back, and the write's
    end leaves the turn free."""
    turn = CpuTurn()
    has_turn, release = threading.Event(), threading.Event()
    holder = _holder(turn, has_turn, release)
    seen: list[tuple[int, int]] = []
    with turn.held(), turn.unwaited():
        with turn.aside():
            holder.start()
            assert has_turn.wait(WAIT)
        release.set()
        holder.join(WAIT)  # on paper; the turn is free again
        with turn.held():  # a nested helper: on paper
            seen.append((turn._depth(), turn._owed()))
            with turn.aside():  # its wait's end takes the free turn for real
                pass
            seen.append((turn._depth(), turn._owed()))
        seen.append((turn._depth(), turn._owed()))
    seen.append((turn._depth(), turn._owed()))
    assert seen == [(0, 2), (2, 0), (1, 0), (0, 0)]
    assert turn.wanting == 0
    assert _free(turn)
