"""A whole issued brand per profile, made once per session (RSA key generation is slow)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hsm.base import KeyBackend, KeyHandle, KeyUsage
from setcore.pan import PAN, blinded_account
from setcore.pki import (
    Brand,
    CertificateUsage,
    IssuingCA,
    MerchantData,
    RevokedCertificate,
    TrustStore,
    create_brand,
    issue_brand_crl_identifier,
    issue_cardholder,
    issue_crl,
    issue_gateway,
    issue_merchant,
    kem_for,
)
from setcore.pki.issuance import card_expiry_end
from setcore.profiles import Profile
from tests.cards import VISA
from tests.setcore.refusals import refused  # noqa: F401 - re-exported to the tests importing it from here

TEST_PAN = VISA
# Far enough ahead that the yearly certificate lifetime, not the card, sets notAfter.
TEST_EXPIRY = "203012"
MERCHANT = MerchantData("m-0001", "Corner Shop", pan_allowed=False)

_labels = itertools.count()


def label(world_or_profile: str) -> str:
    """A key label never used before in the shared backend."""
    return f"{world_or_profile}-k{next(_labels)}"


def new_key(backend: KeyBackend, profile: Profile, usage: KeyUsage) -> KeyHandle:
    """A new end-entity key of ``profile`` under a fresh label."""
    algorithm = (
        profile.key_exchange_key if usage is KeyUsage.KEY_EXCHANGE else profile.signature_key
    )
    return backend.generate(label(profile.name), usage, algorithm)


@dataclass(frozen=True)
class World:
    """A brand tree with one certificate of every end-entity kind and current CRLs + BCI."""

    profile: Profile
    backend: KeyBackend
    brand: Brand
    cardholder_key: KeyHandle
    cardholder: bytes
    merchant_sig: bytes
    merchant_kex: bytes
    gateway_sig: bytes
    gateway_kex_key: KeyHandle
    gateway_kex: bytes
    bci: bytes
    crls: tuple[bytes, ...]

    @property
    def root(self) -> IssuingCA:
        return self.brand.root

    @property
    def cas(self) -> tuple[IssuingCA, ...]:
        return tuple(s.ca for s in self.brand.subordinates)

    def store(self, **kwargs: object) -> TrustStore:
        """A fresh trust store pinned to this brand's root, revocation data loaded."""
        store = TrustStore(self.root.der, **kwargs)  # type: ignore[arg-type]
        store.update_revocation(self.bci, self.crls)
        return store

    def key(self, usage: KeyUsage) -> KeyHandle:
        """A new end-entity key of this profile."""
        return new_key(self.backend, self.profile, usage)

    def publish(
        self,
        sequence_num: int,
        revoked: Mapping[bytes, Iterable[int]] | None = None,
        at: datetime | None = None,
        crl_number: int = 2,
    ) -> tuple[bytes, tuple[bytes, ...]]:
        """New CRLs for every CA (``revoked``: CA thumbprint -> serials) and a BCI over them."""
        revoked = revoked or {}
        now = at or datetime.now(UTC)
        pairs = []
        for ca in (self.root, *self.cas):
            entries = [RevokedCertificate(s, now) for s in revoked.get(ca.thumbprint, ())]
            pairs.append((ca.der, issue_crl(ca, entries, crl_number, at=at)))
        bci = issue_brand_crl_identifier(self.root, sequence_num, pairs, at=at)
        return bci, tuple(crl for _, crl in pairs)


def make_world(backend: KeyBackend, profile: Profile) -> World:
    brand = create_brand(backend, profile, "testbrand", label_prefix=f"{profile.name}-")
    cca, mca, pca = (s.ca for s in brand.subordinates)
    secret = bytes(range(32))
    blinded = blinded_account(secret, PAN(TEST_PAN), TEST_EXPIRY)

    def key(usage: KeyUsage) -> KeyHandle:
        return new_key(backend, profile, usage)

    cardholder_key = key(KeyUsage.SIGNATURE)
    cardholder = issue_cardholder(
        cca, cardholder_key.public_key, blinded, card_expiry_end(TEST_EXPIRY)
    )
    m_sig, m_kex = key(KeyUsage.SIGNATURE), key(KeyUsage.KEY_EXCHANGE)
    p_sig, p_kex = key(KeyUsage.SIGNATURE), key(KeyUsage.KEY_EXCHANGE)
    merchant_sig = issue_merchant(mca, m_sig.public_key, CertificateUsage.SIGNATURE, MERCHANT)
    merchant_kex = issue_merchant(
        mca, m_kex.public_key, CertificateUsage.KEY_EXCHANGE, MERCHANT, kem=kem_for(m_kex)
    )
    gateway_sig = issue_gateway(pca, p_sig.public_key, CertificateUsage.SIGNATURE, "gateway-1")
    gateway_kex = issue_gateway(
        pca, p_kex.public_key, CertificateUsage.KEY_EXCHANGE, "gateway-1", kem=kem_for(p_kex)
    )
    pairs = [(ca.der, issue_crl(ca, [], 1)) for ca in (brand.root, cca, mca, pca)]
    bci = issue_brand_crl_identifier(brand.root, 1, pairs)
    return World(
        profile=profile,
        backend=backend,
        brand=brand,
        cardholder_key=cardholder_key,
        cardholder=cardholder,
        merchant_sig=merchant_sig,
        merchant_kex=merchant_kex,
        gateway_sig=gateway_sig,
        gateway_kex_key=p_kex,
        gateway_kex=gateway_kex,
        bci=bci,
        crls=tuple(crl for _, crl in pairs),
    )


@pytest.fixture(scope="session")
def worlds(backend: KeyBackend) -> dict[str, World]:
    """Both profiles' worlds, built lazily."""
    return {}


@pytest.fixture
def world(worlds: dict[str, World], backend: KeyBackend, profile: Profile) -> World:
    if profile.name not in worlds:
        worlds[profile.name] = make_world(backend, profile)
    return worlds[profile.name]


@pytest.fixture(scope="session")
def ec_world(worlds: dict[str, World], backend: KeyBackend) -> World:
    """The EC world alone, for checks that do not depend on the profile."""
    from setcore.profiles import EC

    if EC.name not in worlds:
        worlds[EC.name] = make_world(backend, EC)
    return worlds[EC.name]


def later(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


# -- trust store ---------------------------------------------------------------------
# Shared by the test_truststore* modules and test_bci.

SIG = CertificateUsage.SIGNATURE
KEX = CertificateUsage.KEY_EXCHANGE


def mca_bundle(world: World) -> list[bytes]:
    """The certificate bundle a Merchant CA's end entity sends: that CA's certificate."""
    return [world.brand.merchant_ca.ca.der]


def pca_bundle(world: World) -> list[bytes]:
    """The certificate bundle a Payment Gateway CA's end entity sends: that CA's certificate."""
    return [world.brand.gateway_ca.ca.der]


def cca_bundle(world: World) -> list[bytes]:
    """The certificate bundle a Cardholder CA's end entity sends: that CA's certificate."""
    return [world.brand.cardholder_ca.ca.der]


@pytest.fixture
def store(world: World) -> TrustStore:
    return world.store()


# -- openssl ----------------------------------------------------------------------------


def openssl() -> str:
    """Path of the openssl binary; a missing tool fails the test loudly."""
    found = shutil.which("openssl")
    if found is None:
        pytest.fail("openssl is required for these tests (Debian package: openssl)")
    return found


def write_pem(path: Path, ders: Sequence[bytes], kind: str = "cert") -> Path:
    pems = []
    for der in ders:
        if kind == "cert":
            pems.append(
                x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            )
        else:
            pems.append(x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM))
    path.write_bytes(b"".join(pems))
    return path


def run_openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [openssl(), *args], capture_output=True, text=True, check=False, timeout=60
    )
