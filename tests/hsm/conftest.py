"""Fixtures for the key-backend tests: a private SoftHSM, fresh tokens, every backend.

SoftHSM reads SOFTHSM2_CONF when the PKCS#11 module initializes, so one temporary
configuration (token directory under pytest's temp dir, never the system one) serves the
whole test session; each test that needs a token gets a fresh one. The environment
variables are shared with tests/cli through SETPAY_TEST_SOFTHSM_ROOT so both directories
use the same configuration in one run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsm.base import KeyBackend
from hsm.observer import Observer
from hsm.pkcs11 import Pkcs11Backend
from hsm.software import SoftwareBackend

from .testbed import (
    KEYSTORE_PASSPHRASE,
    BackendFactory,
    SoftHsm,
    SoftToken,
    session_softhsm,
)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """The session's SoftHSM (fails loudly when SoftHSM is not installed)."""
    return session_softhsm(tmp_path_factory)


@pytest.fixture
def token(softhsm: SoftHsm) -> Iterator[SoftToken]:
    """A fresh token, removed after the test."""
    made = softhsm.init_token()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


@pytest.fixture
def pkcs11_backend(token: SoftToken) -> Iterator[Pkcs11Backend]:
    """A PKCS#11 backend on a fresh token (the PKCS#11-only modules' ``backend``)."""
    opened = Pkcs11Backend(token.config())
    yield opened
    opened.close()


@pytest.fixture(params=["software-ephemeral", "software-keystore", "pkcs11"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    """A factory for each backend kind: the contract suite runs once per kind."""
    return _factory(request.param, request, tmp_path)


@pytest.fixture(params=["software-keystore", "pkcs11"])
def persistent_backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    """A factory for each backend kind whose keys outlive the backend object."""
    return _factory(request.param, request, tmp_path)


def _factory(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    if kind == "software-ephemeral":
        return BackendFactory(kind, _ephemeral)
    if kind == "software-keystore":
        directory = tmp_path / "keystore"

        def keystore(observer: Observer | None) -> KeyBackend:
            return SoftwareBackend.open(directory, KEYSTORE_PASSPHRASE, observer)

        return BackendFactory(kind, keystore)
    made: SoftToken = request.getfixturevalue("token")
    return BackendFactory(kind, lambda observer: Pkcs11Backend(made.config(), observer))


def _ephemeral(observer: Observer | None) -> KeyBackend:
    return SoftwareBackend.ephemeral(observer)


@pytest.fixture
def backend(backend_factory: BackendFactory) -> Iterator[KeyBackend]:
    """An open backend of each kind, closed after the test."""
    opened = backend_factory.open()
    yield opened
    opened.close()
