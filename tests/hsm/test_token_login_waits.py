"""A login's waits never hold the PKCS#11 module lock through a queue for the turn.

A login runs with the module lock held, and a health probe (which holds no turn to
compute) needs that lock within its pool wait. So nothing inside a login waits aside
(``hsm.observer.waiting``): the pause between two login attempts is a plain sleep, turn
and all; and a login lock file held by another process is waited for with the module lock
let go, aside and holding nothing, the login then made anew with the module lock taken
again. A probe meanwhile is answered, not refused "held the PKCS#11 module for more than
1000 ms".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gateway.cpu_turn import CpuTurn
from hsm import token_connect, token_session
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import TransientBackendError
from hsm.filelock import lock_directory
from hsm.pin_latch import PinLatch
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_login import TokenLocks

from .login_lock_support import entries_counted, first_login_fails, held_elsewhere, turn_lent
from .testbed import DATA, SOFTHSM_MODULE, SoftToken

#: A probe's pool wait: the module lock held longer than this refuses it.
PROBE_WAIT_SECONDS = 1.0

#: Another request computing with the turn while the login waits: longer than a probe's
#: wait, so a login that queued for the turn holding the module lock is seen.
LONG_CALL_SECONDS = 2.5


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


def _stem(token: SoftToken, *, own: bool) -> str:
    """The login lock stem of ``token``: its own (named after its serial), or its label's
    (what a label-only first login takes first)."""
    config = token.config()
    latch = PinLatch(config.pin_source)
    serial = token.serial if own else None
    label = None if own else config.token_label
    return TokenLocks(SOFTHSM_MODULE, lock_directory(config.lock_dir), latch, label, serial).stem


def _with_a_long_call(
    turn: CpuTurn, handler: Callable[[], object]
) -> tuple[list[object], Callable[[], None]]:
    """Run ``handler`` holding ``turn``, then (once it gave the turn up, or 0.1 s in) a
    long call holding the turn; the handler's outcome, and a join for both."""
    outcome: list[object] = []
    started = threading.Event()

    def handle() -> None:
        with turn.held():
            started.set()
            try:
                outcome.append(handler())
            except TransientBackendError as exc:
                outcome.append(exc)

    def long_call() -> None:
        started.wait()
        time.sleep(0.1)
        with turn.held():
            time.sleep(LONG_CALL_SECONDS)

    threads = [threading.Thread(target=handle), threading.Thread(target=long_call)]
    for thread in threads:
        thread.start()

    def join() -> None:
        for thread in threads:
            thread.join()

    return outcome, join


def _close(made: list[object]) -> None:
    """Close every backend in ``made`` (a handler's outcome may be an error instead)."""
    for backend in made:
        if isinstance(backend, Pkcs11Backend):
            backend.close()


def _probe(backend: Pkcs11Backend) -> str:
    try:
        backend.check_health()
    except TransientBackendError as exc:
        return f"refused: {exc}"
    return "answered"


def test_probe_answered_while_a_login_retry_pauses(
    token: SoftToken, turn: CpuTurn, entries: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Pkcs11Backend(token.config().with_pool(wait_seconds=PROBE_WAIT_SECONDS))
    monkeypatch.setattr(token_connect, "LOGIN_RETRY_PAUSE_SECONDS", 0.2)
    tries = first_login_fails(monkeypatch)
    outcome, join = _with_a_long_call(turn, lambda: Pkcs11Backend(token.config()))
    try:
        time.sleep(0.5)  # the pause is over; once queued for the turn, for 2.5 s
        assert _probe(probe) == "answered"
    finally:
        join()
        _close([*outcome, probe])
    # The handler's two; then the probe's, its login lost to the handler's restart.
    assert tries == ["login", "login", "login"]
    assert len(outcome) == 1 and isinstance(outcome[0], Pkcs11Backend)
    assert entries == []  # the pause never went aside


@pytest.mark.parametrize("held", ["label's", "token's own", "both"])
def test_probe_answered_while_a_login_lock_waiter_queues_for_the_turn(
    token: SoftToken, turn: CpuTurn, entries: list[str], held: str
) -> None:
    """The label's lock is the first a label-only login takes; the token's own, the one
    it takes next (``TokenLocks.follow``): either held, the module lock is let go."""
    assert _stem(token, own=False) != _stem(token, own=True)  # two files, or no test
    probe = Pkcs11Backend(token.config().with_pool(wait_seconds=PROBE_WAIT_SECONDS))
    stems = {
        "label's": [_stem(token, own=False)],
        "token's own": [_stem(token, own=True)],
        "both": [_stem(token, own=False), _stem(token, own=True)],
    }[held]
    with held_elsewhere(stems) as let_go:
        outcome, join = _with_a_long_call(turn, lambda: Pkcs11Backend(token.config()))
        try:
            time.sleep(0.3)
            let_go()  # the other process's login ends while the handler waits aside
            time.sleep(0.2)  # it queues for its turn behind the long call from here
            assert _probe(probe) == "answered"
        finally:
            join()
            _close([*outcome, probe])
    assert len(outcome) == 1 and isinstance(outcome[0], Pkcs11Backend)
    assert entries  # the handler waited aside: the long call had the turn meanwhile


def test_a_relogin_in_a_call_waits_for_the_login_lock_without_the_module_lock(
    token: SoftToken, turn: CpuTurn
) -> None:
    """A call whose link must log in again (the module restarted under it) meets another
    process's login: it waits with the module lock let go, then signs."""
    backend = Pkcs11Backend(token.config())
    try:
        key = backend.generate("signer", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        module = cryptoki(SOFTHSM_MODULE)
        with module.lock:
            module.reinitialize()  # every link of the process logs in again
        probe = Pkcs11Backend(token.config().with_pool(wait_seconds=PROBE_WAIT_SECONDS))
        try:
            with held_elsewhere([_stem(token, own=True)]) as let_go:
                outcome, join = _with_a_long_call(turn, lambda: backend.sign(key, DATA))
                try:
                    time.sleep(0.3)
                    let_go()
                    time.sleep(0.2)
                    assert _probe(probe) == "answered"
                finally:
                    join()
        finally:
            probe.close()
        (signed,) = outcome
        assert isinstance(signed, bytes) and signed
    finally:
        backend.close()


def test_a_login_lock_never_let_go_ends_the_wait_transiently(
    token: SoftToken, turn: CpuTurn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_session, "LOCK_TIMEOUT_SECONDS", 0.5)
    probe = Pkcs11Backend(token.config().with_pool(wait_seconds=PROBE_WAIT_SECONDS))
    try:
        with held_elsewhere([_stem(token, own=False)]):
            outcome, join = _with_a_long_call(turn, lambda: Pkcs11Backend(token.config()))
            try:
                time.sleep(0.3)  # waiting for the lock file: the module lock is free
                assert _probe(probe) == "answered"
            finally:
                join()
    finally:
        probe.close()
    (refused,) = outcome
    assert isinstance(refused, TransientBackendError)
    assert "still held by another process after 500 ms" in str(refused)
