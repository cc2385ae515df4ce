"""A running bank per profile for the gateway tests (made once: RSA keygen is slow), this
process's metrics in a registry of a test's own, and a fresh SoftHSM token."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from gateway import metrics
from tests.hsm.testbed import SoftToken, session_softhsm

from .actors import Merchant, World, open_world, register_merchant


@pytest.fixture(scope="session")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, World]]:
    made: dict[str, World] = {}

    class Lazy(dict[str, World]):
        def __missing__(self, profile: str) -> World:
            world = open_world(tmp_path_factory.mktemp(f"bank-{profile}") / "bank", profile)
            self[profile] = world
            made[profile] = world
            return world

    yield Lazy()
    for world in made.values():
        world.close()


@pytest.fixture(params=["ec", "rsa"])
def world(request: pytest.FixtureRequest, worlds: dict[str, World]) -> World:
    return worlds[request.param]


@pytest.fixture
def ec_world(worlds: dict[str, World]) -> World:
    return worlds["ec"]


@pytest.fixture(scope="session")
def merchants(worlds: dict[str, World]) -> dict[str, Merchant]:
    class Lazy(dict[str, Merchant]):
        def __missing__(self, profile: str) -> Merchant:
            self[profile] = m = register_merchant(worlds[profile], f"M-{profile}-1")
            return m

    return Lazy()


@pytest.fixture
def merchant(world: World, merchants: dict[str, Merchant]) -> Merchant:
    return merchants[world.profile]


@pytest.fixture
def ec_merchant(merchants: dict[str, Merchant]) -> Merchant:
    return merchants["ec"]


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """This process's metrics on, in a registry of the test's own; off again after it."""
    registry = CollectorRegistry()
    metrics.enable(0, registry)
    try:
        yield registry
    finally:
        metrics.disable()


@pytest.fixture
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    """A fresh token on the session's SoftHSM, removed after the test."""
    made = session_softhsm(tmp_path_factory).init_token()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)
