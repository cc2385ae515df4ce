"""Fixtures every test tree may use."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def umask() -> Iterator[None]:
    """Each test sets the umask it needs (``os.umask``); the process gets its own back."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)
