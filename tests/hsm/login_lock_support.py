"""For the lock-wait tests: a login lock file held as another process would hold it, a
server's turn lent to the key backends' waits, every entry into the wait hook counted,
and a first login attempt that fails as a passing fault."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator

import pytest
from pkcs11 import exceptions as p11

from gateway.cpu_turn import CpuTurn
from hsm.observer import wait_aside_with
from hsm.pinsource import PinSource
from hsm.token_login import LoginCalls


@contextlib.contextmanager
def held_elsewhere(stems: list[str]) -> Iterator[Callable[[], None]]:
    """Hold the login lock files of ``stems`` as another process would (another open
    file: its ``flock`` conflicts with the backend's); the callable lets them go."""
    fds = [os.open(f"{stem}.login.lock", os.O_RDWR | os.O_CREAT, 0o600) for stem in stems]
    for fd in fds:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def let_go() -> None:
        while fds:
            os.close(fds.pop())  # closing the only open of it lets its flock go

    try:
        yield let_go
    finally:
        let_go()


@contextlib.contextmanager
def turn_lent() -> Iterator[CpuTurn]:
    """A server's turn, lent to the key backends' waits (``wait_aside_with``) inside."""
    made = CpuTurn()
    before = wait_aside_with(made.aside)
    try:
        yield made
    finally:
        wait_aside_with(before)


@contextlib.contextmanager
def entries_counted(turn: CpuTurn) -> Iterator[list[str]]:
    """Every entry into the wait hook inside, one "aside" each (``turn``'s ``aside``
    still runs)."""
    seen: list[str] = []

    @contextlib.contextmanager
    def counting() -> Iterator[None]:
        seen.append("aside")
        with turn.aside():
            yield

    before = wait_aside_with(counting)
    try:
        yield seen
    finally:
        wait_aside_with(before)


def first_login_fails(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The next login attempt of the process fails with a passing fault (tried again
    after the pause), the later ones log in; one "login" is recorded for each."""
    open_logged_in = LoginCalls.open_logged_in
    tries: list[str] = []

    def first_fails(self: LoginCalls, token: object, source: PinSource) -> object:
        tries.append("login")
        if len(tries) == 1:
            raise p11.DeviceError()
        return open_logged_in(self, token, source)

    monkeypatch.setattr(LoginCalls, "open_logged_in", first_fails)
    return tries
