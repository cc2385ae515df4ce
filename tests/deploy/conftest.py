"""Fixtures of the deployment tests: the session's private SoftHSM and banks made on it.

The SoftHSM configuration is the one tests/hsm and tests/cli use (a temporary token
directory, shared through SETPAY_TEST_SOFTHSM_ROOT), so in-process PKCS#11 work here and
the commands run as subprocesses see the same tokens. Never the system token directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.hsm.testbed import SoftHsm, session_softhsm

from .commands import ProvisionedBank, provision_bank


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """The session's SoftHSM (fails loudly when SoftHSM is not installed)."""
    return session_softhsm(tmp_path_factory)


@pytest.fixture
def ec_bank(
    softhsm: SoftHsm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProvisionedBank]:
    """A fresh ec-profile bank on its own token, for a test that may disturb the token."""
    bank = provision_bank(softhsm, tmp_path_factory.mktemp("ec-bank"), "ec")
    yield bank
    shutil.rmtree(bank.token.directory, ignore_errors=True)
