"""A call's waits for a login lock file resume where they stopped and share one deadline.

A login that meets another process's login lock file lets the module lock go and waits
(``hsm.token_session``); the call then resumes at the attempt it was at, so an operation
safe to repeat runs at most twice (the run, then once after a reconnect), never a third
time for the wait; and all of one call's such waits end together, at
``LOCK_TIMEOUT_SECONDS`` from the first, however often the file changes hands, with the
transient error saying so. Real SoftHSM tokens; the lock held by a helper thread, as
another process would.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pkcs11 import exceptions as p11

from hsm import token_session
from hsm.errors import TransientBackendError
from hsm.filelock import LockTaken
from hsm.token_connect import TokenConnect
from hsm.token_session import TokenLink

from .login_lock_support import held_elsewhere
from .testbed import SoftToken


def test_a_login_lock_wait_in_the_retry_never_runs_the_operation_a_third_time(
    token: SoftToken,
) -> None:
    link = TokenLink(token.config())
    calls: list[int] = []

    def operation(session: object) -> None:
        calls.append(1)
        raise p11.DeviceRemoved()  # token lost: reconnect and run once more

    try:
        with held_elsewhere([link._locks.stem]) as let_go:
            threading.Timer(0.3, let_go).start()
            with pytest.raises(TransientBackendError):
                link.run(operation, "sign")
    finally:
        link.close()
    assert len(calls) == 2, calls


@pytest.mark.parametrize("via", ["check_health", "run"])
def test_a_login_lock_that_keeps_changing_hands_ends_within_one_deadline(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, via: str
) -> None:
    link = TokenLink(token.config())
    free = str(tmp_path / "free.login.lock")
    stop = threading.Event()

    def retaken_every_time(self: TokenConnect, invalidate: object) -> object:
        if stop.is_set():
            raise TransientBackendError("stopped by the test")
        raise LockTaken(free)  # another holder took it again before this try

    monkeypatch.setattr(token_session, "LOCK_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(TokenConnect, "connect", retaken_every_time)
    link._broken = True
    outcome: list[tuple[TransientBackendError, float]] = []

    def call() -> None:
        try:
            if via == "run":
                link.run(lambda session: None, "sign")
            else:
                link.check_health()
        except TransientBackendError as exc:
            outcome.append((exc, time.monotonic() - started))

    started = time.monotonic()
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(5.0)
    stop.set()
    thread.join(5.0)
    link.close()
    ((exc, took),) = outcome
    assert "still held by another process after 500 ms" in str(exc), (str(exc), took)
    assert took < 2.0
