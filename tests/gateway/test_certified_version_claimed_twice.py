"""A gateway whose uncertified newest key version two keys claim still starts on the
version its certificate certifies (``gateway.bank_pki.certified_version``), saying which
version it passed over; a bank key looked up as "the newest" with nothing to tell which
version is meant (``_certified_key``: the roots, the CAs, the TLS root) is refused.

``get`` of a label's newest refuses a version claimed twice (made by processes holding
different key locks), so the bank no longer started although the certified version below
it was fine; for a while ``get`` gave the version below instead, to every caller, and
``_certified_key`` then refused as "v1 is not the key X certifies", naming the wrong
version, or took an older one where a newer uncertified key must stop the start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.bank_pki import (
    GATEWAY_SIG_LABEL,
    ROOT_LABEL,
    BankIncomplete,
    _certified_key,
    certified_version,
)
from hsm.base import KeyAlgorithm, KeyUsage, PublicKey
from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from tests.hsm.claims_support import claim_again
from tests.hsm.testbed import SoftToken


@pytest.fixture
def backend(token: SoftToken) -> Iterator[Pkcs11Backend]:
    opened = Pkcs11Backend(token.config())
    yield opened
    opened.close()


def _certificate(public_key: PublicKey) -> bytes:
    """A certificate of ``public_key`` (its issuer does not matter here)."""
    issuer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(issuer, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.integration
def test_the_certified_version_is_used_when_a_newer_one_is_claimed_twice(
    backend: Pkcs11Backend, caplog: pytest.LogCaptureFixture
) -> None:
    certified = backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)  # a renewal's
    der = _certificate(certified.public_key)
    assert certified_version(backend, GATEWAY_SIG_LABEL, der) == certified
    claim_again(backend, GATEWAY_SIG_LABEL, 2, bytes(16))
    backend.list_keys()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="setpay.bank"):
        assert certified_version(backend, GATEWAY_SIG_LABEL, der) == certified
    # Its own line, naming the version passed over and the one used.
    (said,) = [r.getMessage() for r in caplog.records if r.name == "setpay.bank"]
    assert f"'{GATEWAY_SIG_LABEL}' v2 " in said and "claimed by 2 keys" in said
    assert said.endswith(f"; using v1, the key {GATEWAY_SIG_LABEL}.der certifies")


@pytest.mark.integration
def test_a_certified_newest_claimed_twice_is_refused_as_such(backend: Pkcs11Backend) -> None:
    backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    certified = backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    claim_again(backend, GATEWAY_SIG_LABEL, 2, bytes(16))
    backend.list_keys()
    # The certified key is one of the two: the claim is the cause, not "no version".
    with pytest.raises(PermanentBackendError, match=r"'gateway-sig' v2 .* claimed by 2 keys"):
        certified_version(backend, GATEWAY_SIG_LABEL, _certificate(certified.public_key))


@pytest.mark.integration
def test_a_certified_version_claimed_twice_is_refused(backend: Pkcs11Backend) -> None:
    certified = backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    newer = backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    claim_again(backend, GATEWAY_SIG_LABEL, 1, bytes(16))
    backend.list_keys()
    # The certified key is not usable: v2, which it does not certify, is no stand-in.
    with pytest.raises(BankIncomplete, match="no version of key"):
        certified_version(backend, GATEWAY_SIG_LABEL, _certificate(certified.public_key))
    assert certified_version(backend, GATEWAY_SIG_LABEL, _certificate(newer.public_key)) == newer


@pytest.mark.integration
def test_a_label_whose_only_version_is_claimed_twice_stops_the_start(
    backend: Pkcs11Backend,
) -> None:
    certified = backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    claim_again(backend, GATEWAY_SIG_LABEL, 1, bytes(16))
    backend.list_keys()
    with pytest.raises(PermanentBackendError, match="claimed by 2 keys"):
        certified_version(backend, GATEWAY_SIG_LABEL, _certificate(certified.public_key))


@pytest.mark.integration
def test_a_bank_key_whose_newest_is_claimed_twice_is_refused_as_such(
    backend: Pkcs11Backend,
) -> None:
    older = backend.generate(ROOT_LABEL, KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    newer = backend.generate(ROOT_LABEL, KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    assert _certified_key(backend, ROOT_LABEL, _certificate(newer.public_key)) == newer
    claim_again(backend, ROOT_LABEL, 2, bytes(16))
    backend.list_keys()
    # Neither certificate makes the newest usable: it is two keys.
    for der in (_certificate(newer.public_key), _certificate(older.public_key)):
        with pytest.raises(PermanentBackendError, match=r"'brand-root' v2 .* claimed by 2 keys"):
            _certified_key(backend, ROOT_LABEL, der)


@pytest.mark.integration
def test_a_bank_key_whose_older_version_is_claimed_twice_is_still_used(
    backend: Pkcs11Backend,
) -> None:
    backend.generate(ROOT_LABEL, KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    newer = backend.generate(ROOT_LABEL, KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    claim_again(backend, ROOT_LABEL, 1, bytes(16))
    backend.list_keys()
    assert _certified_key(backend, ROOT_LABEL, _certificate(newer.public_key)) == newer
