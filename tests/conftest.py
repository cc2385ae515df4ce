"""Fixtures every test tree may use."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cli import hardening


@pytest.fixture
def umask() -> Iterator[None]:
    """Each test sets the umask it needs (``os.umask``); the process gets its own back."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """A pipe of this process's, its ends by name ("read", "write"; a test that closes one
    takes it out); the program's hardening left out of ``main`` (it would last for the
    whole test session)."""
    read_end, write_end = os.pipe()
    ends = {"read": read_end, "write": write_end}
    monkeypatch.setattr(hardening, "harden_process", lambda env: None)
    yield ends
    for fd in ends.values():
        os.close(fd)
