"""Fixtures every test tree may use."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cli import hardening
from clients.wallet import vault
from hsm import keystore_header

# The scrypt cost of the software keystores and card files this process makes: the
# product's (2^15, some 70 ms a stretch here, more on a loaded machine) guards a
# passphrase against guessing, which no test's needs, and tests make and open them by
# the thousand (half the time of the merchant's settlement tests). Set before any test
# module is imported, so a test reading the constant reads this one. Either file is
# opened with the cost its header names: a keystore made here opens in a bank's
# subprocess, and one a subprocess made (the product's cost) opens here. A card file
# weaker than its reader's constant is refused, so one made here opens in this process.
TEST_SCRYPT_N = 2**10
# The product's own, as the modules define them (tests/test_scrypt_cost.py holds them).
PRODUCT_SCRYPT_N = {"keystore": keystore_header.SCRYPT_N, "card file": vault.SCRYPT_N}
keystore_header.SCRYPT_N = TEST_SCRYPT_N
vault.SCRYPT_N = TEST_SCRYPT_N


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
