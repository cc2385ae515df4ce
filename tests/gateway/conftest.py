"""A running bank per profile for the gateway tests (made once: RSA keygen is slow)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
