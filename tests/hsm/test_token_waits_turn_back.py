"""A key backend's waits aside (``hsm.observer.waiting``): only when something is taken,
and never holding what was waited for while the turn comes back.

A free session slot, module lock or lock file is taken at once, turn and all: the wait
hook is not even entered. A taken one is waited for aside, and only let go of there:
taken for good once the caller's turn to compute is back, so a thread that holds no
turn (a health probe, another process) is not kept out while a handler queues for it.
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
from hsm import token_connect
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import TransientBackendError
from hsm.filelock import exclusive_lock
from hsm.pkcs11 import Pkcs11Backend
from hsm.session_pool import SessionPool

from .login_lock_support import entries_counted, first_login_fails, turn_lent
from .testbed import DATA, SOFTHSM_MODULE, SoftToken


@pytest.fixture
def turn() -> Iterator[CpuTurn]:
    """A server's turn, lent to the key backends' waits for the test."""
    with turn_lent() as made:
        yield made


@pytest.fixture
def entries(turn: CpuTurn) -> Iterator[list[str]]:
    """Every entry into the wait hook (the turn's ``aside`` still runs)."""
    with entries_counted(turn) as seen:
        yield seen


def test_free_session_and_module_lock_never_enter_the_wait_hook(
    token: SoftToken, turn: CpuTurn, entries: list[str]
) -> None:
    backend = Pkcs11Backend(token.config())
    try:
        key = backend.generate("signer", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        entries.clear()
        with turn.held():
            for _ in range(20):
                assert backend.sign(key, DATA)
        assert entries == []
    finally:
        backend.close()


def test_free_pool_slot_never_enters_the_wait_hook(entries: list[str]) -> None:
    pool: SessionPool[str] = SessionPool(size=2, wait_seconds=1.0)
    with pool.lease(), pool.lease():
        assert pool.in_use == 2
    assert entries == []


def test_free_lock_file_never_enters_the_wait_hook(tmp_path: Path, entries: list[str]) -> None:
    with exclusive_lock(str(tmp_path / "token.login.lock"), 1.0):
        pass
    assert entries == []


def _queued_for_the_turn(turn: CpuTurn, wait: threading.Event, seconds: float) -> threading.Thread:
    """A thread that takes ``turn`` once ``wait`` is set and holds it ``seconds`` (a long
    call of the worker), so that whoever waited aside queues for the turn meanwhile."""

    def long_call() -> None:
        wait.wait()
        with turn.held():
            time.sleep(seconds)

    thread = threading.Thread(target=long_call)
    thread.start()
    return thread


def _handler(
    turn: CpuTurn, call: Callable[[], object], aside: threading.Event
) -> tuple[threading.Thread, list[object]]:
    """A handler holding ``turn`` that runs ``call``; ``aside`` is set once it gave the
    turn up to wait; its outcome (the call's result or what it raised) is appended."""
    outcome: list[object] = []
    holding = threading.Event()

    def handler() -> None:
        with turn.held():
            holding.set()
            try:
                outcome.append(call())
            except TransientBackendError as exc:
                outcome.append(exc)

    def watch() -> None:  # the handler gave the turn up: it is waiting aside
        holding.wait()
        while turn.wanting != 0:
            time.sleep(0.005)
        aside.set()

    thread = threading.Thread(target=handler)
    thread.start()
    threading.Thread(target=watch, daemon=True).start()
    return thread, outcome


def test_probe_answered_while_a_module_lock_waiter_queues_for_the_turn(
    token: SoftToken, turn: CpuTurn
) -> None:
    """The module lock comes free while the handler that waited for it is queued behind
    a long call for its turn: a health probe (no turn) gets it meanwhile, and the
    handler signs once its turn is back."""
    backend = Pkcs11Backend(token.config().with_pool(wait_seconds=1.0))
    try:
        key = backend.generate("signer", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        lock = cryptoki(SOFTHSM_MODULE).lock
        lock.acquire()  # a first probe in a token call: no turn held
        aside = threading.Event()
        handler, outcome = _handler(turn, lambda: backend.sign(key, DATA), aside)
        assert aside.wait(5)
        long_call = _queued_for_the_turn(turn, aside, 2.5)
        time.sleep(0.3)  # the long call has the turn
        lock.release()  # the first probe returns: no token call runs from here on
        time.sleep(0.2)
        try:
            backend.check_health()  # a second probe, within the 1 s pool wait
        finally:
            long_call.join()
            handler.join()
        (signed,) = outcome
        assert isinstance(signed, bytes) and signed
    finally:
        backend.close()


def test_pool_slot_reaches_a_borrower_without_a_turn_while_the_waiter_queues(
    turn: CpuTurn,
) -> None:
    pool: SessionPool[str] = SessionPool(size=1, wait_seconds=1.0)
    first = pool.lease()
    first.__enter__()
    aside = threading.Event()

    def lease_one() -> str:
        with pool.lease():
            return "leased"

    handler, outcome = _handler(turn, lease_one, aside)
    assert aside.wait(5)
    long_call = _queued_for_the_turn(turn, aside, 2.5)
    time.sleep(0.3)
    first.__exit__(None, None, None)  # the slot comes free while the handler queues
    time.sleep(0.2)
    try:
        with pool.lease():  # a probe, no turn: waits at most 1 s for the free slot
            assert pool.in_use == 1
    finally:
        long_call.join()
        handler.join()
    assert outcome == ["leased"]
    assert pool.in_use == 0


def test_lock_file_reaches_another_holder_while_the_waiter_queues(
    tmp_path: Path, turn: CpuTurn
) -> None:
    path = str(tmp_path / "token.login.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # another open file: another holder
    fcntl.flock(fd, fcntl.LOCK_EX)
    aside = threading.Event()

    def take() -> str:
        with exclusive_lock(path, 1.0):
            return "locked"

    handler, outcome = _handler(turn, take, aside)
    assert aside.wait(5)
    long_call = _queued_for_the_turn(turn, aside, 2.5)
    time.sleep(0.3)
    fcntl.flock(fd, fcntl.LOCK_UN)  # free while the handler queues for its turn
    time.sleep(0.2)
    try:
        with exclusive_lock(path, 1.0):  # another process's login: no turn of ours
            pass
    finally:
        os.close(fd)
        long_call.join()
        handler.join()
    assert outcome == ["locked"]


def test_login_retry_pause_keeps_the_turn(
    token: SoftToken, turn: CpuTurn, entries: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pause between two login attempts is a plain sleep: given up aside, it would
    queue for the turn back holding the module lock and the login lock file (a probe
    refused meanwhile: tests/hsm/test_token_login_waits.py)."""
    monkeypatch.setattr(token_connect, "LOGIN_RETRY_PAUSE_SECONDS", 1.0)
    tries = first_login_fails(monkeypatch)
    made: list[Pkcs11Backend] = []
    started = threading.Event()

    def handler() -> None:
        with turn.held():
            started.set()
            made.append(Pkcs11Backend(token.config()))

    thread = threading.Thread(target=handler)
    thread.start()
    started.wait()
    time.sleep(0.3)  # in the 1 s pause by now
    try:
        with turn.held(within=0.3):
            got = "turn"
    except TurnNotFree:
        got = "no turn"
    thread.join()
    for backend in made:
        backend.close()
    assert got == "no turn"
    assert entries == []
    assert tries == ["login", "login"] and len(made) == 1
