"""The merchant's older key-exchange versions matter only while their certificates last
(``clients.identity.certified_key_exchanges``), as the bank's own do: one that has ended
is left out, unchecked, so that a version no peer seals to any more cannot keep the
merchant from opening. The newest is always checked."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clients.identity import certified_key_exchanges
from hsm.base import KemAlgorithm, KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.errors import ConfigurationError
from setcore.pki.extensions import kem_extension
from setcore.pki.issuance import key_usage

LABEL = "merchant-kex"
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
ISSUER = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def backend() -> Iterator[KeyBackend]:
    with SoftwareBackend.ephemeral() as made:
        yield made


def _certificate(key: KeyHandle, kem: KemAlgorithm, ends: datetime.datetime) -> bytes:
    """A key-exchange certificate of ``key`` naming ``kem``, valid until ``ends``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "M-OLDER")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(ends - 30 * DAY)
        .not_valid_after(ends)
        .add_extension(key_usage(agree=True), critical=True)
        .add_extension(kem_extension(kem), critical=False)
    )
    return builder.sign(ISSUER, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _versions(backend: KeyBackend, older_ends: datetime.datetime) -> tuple[KeyHandle, KeyHandle]:
    """v1, whose certificate (ending ``older_ends``) names a KEM the key does not accept,
    and v2, the newest, certified as made."""
    older = backend.generate(LABEL, KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.store_certificate(older, _certificate(older, KemAlgorithm.RSA_OAEP_SHA256, older_ends))
    newest = backend.generate(LABEL, KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.store_certificate(
        newest, _certificate(newest, KemAlgorithm.P256_HKDF_SHA256, NOW + DAY)
    )
    return older, newest


def test_an_older_version_whose_certificate_ended_is_left_out_unchecked(
    backend: KeyBackend,
) -> None:
    # Before, it was checked all the same, and the merchant refused to open.
    _, newest = _versions(backend, NOW - DAY)
    assert [key for key, _ in certified_key_exchanges(backend, LABEL)] == [newest]


def test_an_older_version_whose_certificate_lasts_is_checked(backend: KeyBackend) -> None:
    older, _ = _versions(backend, NOW + DAY)
    with pytest.raises(ConfigurationError, match="key 'merchant-kex' v1 accepts p256-hkdf"):
        certified_key_exchanges(backend, LABEL)
    assert older.version == 1
    # The same, asked after its certificate ended.
    assert len(certified_key_exchanges(backend, LABEL, NOW + 2 * DAY)) == 1


def test_the_newest_version_is_kept_and_checked_even_when_ended(backend: KeyBackend) -> None:
    _, newest = _versions(backend, NOW - DAY)
    kept = certified_key_exchanges(backend, LABEL, NOW + 2 * DAY)
    assert [key for key, _ in kept] == [newest]
    made = backend.generate(LABEL, KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.store_certificate(made, _certificate(made, KemAlgorithm.RSA_OAEP_SHA256, NOW - DAY))
    with pytest.raises(ConfigurationError, match="key 'merchant-kex' v3 accepts p256-hkdf"):
        certified_key_exchanges(backend, LABEL)
