"""Fixtures for the protocol core: parties with real keys in an ephemeral software backend."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from hsm.base import KeyBackend, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.envelope import Recipient
from setcore.profiles import EC, PROFILES, Profile

from .certified import Certified, certify


@dataclass(frozen=True)
class Party:
    """A protocol participant: a signature key and a key-exchange key, with fake thumbs.

    Containers only need a certificate's thumbprint, not the certificate; the PKI tests
    cover real certificates.
    """

    backend: KeyBackend
    sig: KeyHandle
    sig_thumb: bytes
    kex: KeyHandle
    kex_thumb: bytes

    @property
    def recipient(self) -> Recipient:
        assert self.kex.kem is not None
        return Recipient(self.kex.public_key, self.kex_thumb, self.kex.kem)


def make_party(backend: KeyBackend, profile: Profile, name: str) -> Party:
    sig = backend.generate(f"{name}-sig", KeyUsage.SIGNATURE, profile.signature_key)
    kex = backend.generate(f"{name}-kex", KeyUsage.KEY_EXCHANGE, profile.key_exchange_key)
    return Party(backend, sig, os.urandom(32), kex, os.urandom(32))


@pytest.fixture(scope="session")
def backend() -> KeyBackend:
    return SoftwareBackend.ephemeral()


@pytest.fixture(scope="session", params=sorted(PROFILES))
def profile(request: pytest.FixtureRequest) -> Profile:
    return PROFILES[request.param]


@pytest.fixture(scope="session")
def parties(backend: KeyBackend) -> dict[str, dict[str, Party]]:
    """Per profile: a cardholder, a merchant and a gateway (RSA keygen is slow: make once)."""
    return {
        name: {role: make_party(backend, p, f"{name}-{role}") for role in ("c", "m", "p")}
        for name, p in PROFILES.items()
    }


@pytest.fixture
def cardholder(parties: dict[str, dict[str, Party]], profile: Profile) -> Party:
    return parties[profile.name]["c"]


@pytest.fixture
def merchant(parties: dict[str, dict[str, Party]], profile: Profile) -> Party:
    return parties[profile.name]["m"]


@pytest.fixture
def gateway(parties: dict[str, dict[str, Party]], profile: Profile) -> Party:
    return parties[profile.name]["p"]


@pytest.fixture
def certified(backend: KeyBackend, profile: Profile) -> Certified:
    """Merchants and a gateway with real certificates, for each profile."""
    return certify(backend, profile)


@pytest.fixture
def ec_certified(backend: KeyBackend) -> Certified:
    """The same for the ec profile only: for checks that do not depend on the keys."""
    return certify(backend, EC)


@pytest.fixture
def ec(ec_certified: Certified) -> Certified:
    """``ec_certified`` by the short name the purchase checks use."""
    return ec_certified
