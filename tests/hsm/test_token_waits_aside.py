"""A key backend's waits and a server's turn to compute (``hsm.observer.wait_aside_with``).

A handler thread holds its worker's turn (``gateway.cpu_turn``) while it computes. When it
must wait for a token session, the PKCS#11 module lock or a token's lock file, held by
a thread that holds no turn (a health probe or a refresh stuck in a token call) or by
another process, it waits with the turn given up, so the worker's other calls go on.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.cpu_turn import CpuTurn, TurnNotFree
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import TransientBackendError
from hsm.filelock import exclusive_lock
from hsm.observer import wait_aside_with
from hsm.pkcs11 import Pkcs11Backend
from hsm.session_pool import SessionPool

from .testbed import DATA, SOFTHSM_MODULE, SoftToken


@pytest.fixture
def turn() -> Iterator[CpuTurn]:
    """A server's turn, lent to the key backends' waits for the test."""
    made = CpuTurn()
    before = wait_aside_with(made.aside)
    yield made
    wait_aside_with(before)


def _turn_free_for_others(turn: CpuTurn, within: float = 1.0) -> bool:
    """Whether another thread gets ``turn`` within ``within`` seconds."""
    got: list[bool] = []

    def other_call() -> None:
        try:
            with turn.held(within=within):
                got.append(True)
        except TurnNotFree:
            got.append(False)

    thread = threading.Thread(target=other_call)
    thread.start()
    thread.join()
    return got == [True]


def _while_waiting(
    turn: CpuTurn, wait: Callable[[], object]
) -> tuple[bool, bool, BaseException | None]:
    """Run ``wait`` in a thread holding ``turn``; whether another thread got
    the turn meanwhile, whether the waiter held it again when its wait ended, and what
    the wait raised."""
    started = threading.Event()
    outcome: list[tuple[bool, BaseException | None]] = []

    def handler() -> None:
        with turn.held():
            started.set()
            try:
                wait()
                error = None
            except TransientBackendError as exc:
                error = exc
            # The turn is this thread's again: nobody else gets it now.
            outcome.append((not _turn_free_for_others(turn, 0.05), error))

    thread = threading.Thread(target=handler)
    thread.start()
    started.wait()
    time.sleep(0.1)  # the handler is waiting by now
    others = _turn_free_for_others(turn)
    thread.join()
    ((held_again, error),) = outcome
    return others, held_again, error


def test_module_lock_held_by_a_stuck_probe_does_not_freeze_the_turn(
    token: SoftToken, turn: CpuTurn
) -> None:
    backend = Pkcs11Backend(token.config().with_pool(wait_seconds=2.0))
    try:
        key = backend.generate("signer", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        stuck, release = threading.Event(), threading.Event()

        def probe() -> None:  # a health probe stuck in a token call: no turn held
            with cryptoki(SOFTHSM_MODULE).lock:
                stuck.set()
                release.wait()

        prober = threading.Thread(target=probe)
        prober.start()
        stuck.wait()
        try:
            others, held_again, error = _while_waiting(turn, lambda: backend.sign(key, DATA))
        finally:
            release.set()
            prober.join()
        assert others, "another call of the worker got no turn while the sign waited"
        assert held_again
        assert isinstance(error, TransientBackendError)
        assert "held the PKCS#11 module for more than 2000 ms" in str(error)
        assert backend.sign(key, DATA)  # the token answers again once the probe returns
    finally:
        backend.close()


def test_free_module_lock_is_taken_with_the_turn_kept(token: SoftToken, turn: CpuTurn) -> None:
    backend = Pkcs11Backend(token.config())
    try:
        key = backend.generate("signer", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        with turn.held():
            backend.sign(key, DATA)
            assert turn.wanting == 1  # never given up: nothing was waited for
            assert not _turn_free_for_others(turn, 0.05)
    finally:
        backend.close()


def test_pool_wait_gives_the_turn_up(turn: CpuTurn) -> None:
    # Longer than the other call's wait for the turn: only a wait aside lets it in.
    pool: SessionPool[str] = SessionPool(size=1, wait_seconds=2.0)
    leased, release = threading.Event(), threading.Event()

    def holder() -> None:
        with pool.lease():
            leased.set()
            release.wait()

    first = threading.Thread(target=holder)
    first.start()
    leased.wait()

    def lease_one() -> None:
        with pool.lease():
            pass

    try:
        others, held_again, error = _while_waiting(turn, lease_one)
    finally:
        release.set()
        first.join()
    assert others
    assert held_again
    assert str(error) == "session pool exhausted after 2000 ms (1 sessions in use)"
    assert pool.in_use == 0


def test_pool_waiter_served_after_the_wait_holds_the_turn_again(turn: CpuTurn) -> None:
    pool: SessionPool[str] = SessionPool(size=1, wait_seconds=5.0)
    release = threading.Event()
    leased = threading.Event()

    def holder() -> None:
        with pool.lease() as lease:
            lease.item = "only-session"
            leased.set()
            release.wait()

    first = threading.Thread(target=holder)
    first.start()
    leased.wait()
    got: list[str | None] = []

    def lease_one() -> None:
        with pool.lease() as lease:
            got.append(lease.item)

    threading.Timer(1.3, release.set).start()  # after _while_waiting's look at the turn
    others, held_again, error = _while_waiting(turn, lease_one)
    first.join()
    assert (others, held_again, error, got) == (True, True, None, ["only-session"])


def test_lock_file_held_by_another_process_does_not_freeze_the_turn(
    tmp_path: Path, turn: CpuTurn
) -> None:
    path = str(tmp_path / "token.login.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # another open file: another holder
    fcntl.flock(fd, fcntl.LOCK_EX)

    def take() -> None:
        with exclusive_lock(path, 1.5):
            pass

    try:
        others, held_again, error = _while_waiting(turn, take)
    finally:
        os.close(fd)
    assert others
    assert held_again
    assert isinstance(error, TransientBackendError)
    assert "still held by another process after 1500 ms" in str(error)


def test_without_a_hook_a_wait_is_a_plain_wait() -> None:
    turn = CpuTurn()  # not lent: the backend's waits keep it
    pool: SessionPool[str] = SessionPool(size=1, wait_seconds=2.0)
    with pool.lease():
        others, held_again, error = _while_waiting(turn, lambda: pool.lease().__enter__())
    assert not others
    assert held_again
    assert isinstance(error, TransientBackendError)
