"""Issuer candidates whose keys are off the allow-list cost no signature verification.

A peer's bundle reaches path building before anyone has authenticated it (a wallet's
PReq at the merchant, a renewal CertReq at the CA). Look-alikes of a CA certificate (its
subject name, another issuer, any key) used to have the leaf's signature checked against
each of their keys before the keys themselves were: with an RSA-3072 key whose exponent
is ~3070 bits, each check costs ~80 normal ones, eight per resolve with the trust store's
retry. Real certificates; the look-alikes' keys are public keys over random moduli of
the exact size (the allow-list reads sizes and exponents, never factors).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hsm.policy import RSA_PUBLIC_EXPONENT
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki import chain as pki_chain
from setcore.pki import roles
from setcore.pki.chain import MAX_ISSUER_CANDIDATES
from setpay.v1 import crypto_pb2

from .conftest import SIG, World

# The costliest exponent OpenSSL accepts with an RSA-3072 modulus (it bounds e only
# above that size).
HUGE_EXPONENT = (1 << 3070) + 1
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def _public_key(bits: int, exponent: int) -> rsa.RSAPublicKey:
    modulus = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def _certificate(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    signer: rsa.RSAPrivateKey, *, ca: bool,
) -> bytes:  # fmt: skip
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(signer, hashes.SHA256(), rsa_padding=_PSS).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    """Nobody's CA key: it signs the look-alikes and the hostile leaf, RSA-PSS as a CA does."""
    return rsa.generate_private_key(RSA_PUBLIC_EXPONENT, 2048)


def _look_alikes(
    world: World, signer: rsa.RSAPrivateKey, key: rsa.RSAPublicKey, count: int
) -> list[bytes]:
    """``count`` certificates named as the Cardholder CA, each issued by another name (so
    not self-issued, which path building passes over on sight), all with ``key``."""
    cca = world.brand.cardholder_ca.ca.certificate.subject
    elsewhere = [
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"x{i}")]) for i in range(count)
    ]
    return [_certificate(cca, issuer, key, signer, ca=True) for issuer in elsewhere]


def _counted_signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The DER of every issuer candidate path building verifies a signature against."""
    issuers: list[bytes] = []
    signed_by: Callable[[x509.Certificate, x509.Certificate], bool] = pki_chain._signed_by

    def counted(child: x509.Certificate, issuer: x509.Certificate) -> bool:
        issuers.append(issuer.public_bytes(Encoding.DER))
        return signed_by(child, issuer)

    monkeypatch.setattr(pki_chain, "_signed_by", counted)
    return issuers


@pytest.mark.parametrize(
    ("bits", "exponent"),
    [(3072, HUGE_EXPONENT), (8192, RSA_PUBLIC_EXPONENT)],
    ids=["rsa3072-huge-e", "rsa8192"],
)
def test_look_alikes_with_costly_keys_are_passed_over_unverified(
    ec_world: World, signer: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch,
    bits: int, exponent: int,
) -> None:  # fmt: skip
    fakes = _look_alikes(ec_world, signer, _public_key(bits, exponent), MAX_ISSUER_CANDIDATES)
    leaf = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "victim")]),
        ec_world.brand.cardholder_ca.ca.certificate.subject,
        ec.generate_private_key(ec.SECP256R1()).public_key(), signer, ca=False,
    )  # fmt: skip
    bundle = crypto_pb2.CertBundle(certificates=[leaf, *fakes])
    checked = _counted_signature_checks(monkeypatch)

    with pytest.raises(ProtocolError) as caught:
        ec_world.store().resolve(thumbprint(leaf), bundle, roles.CARDHOLDER, SIG)
    assert checked == []  # not one signature verified with a look-alike's key
    assert caught.value.code == ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, caught.value


def test_the_genuine_chain_behind_look_alikes_still_resolves(
    ec_world: World, signer: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As many look-alikes as issuers are tried per link, ahead of the real Cardholder CA
    # certificate in the bundle: passed over, they take none of the places.
    cca = ec_world.brand.cardholder_ca.ca
    fakes = _look_alikes(ec_world, signer, _public_key(3072, HUGE_EXPONENT), MAX_ISSUER_CANDIDATES)
    bundle = crypto_pb2.CertBundle(certificates=[ec_world.cardholder, *fakes, cca.der])
    checked = _counted_signature_checks(monkeypatch)

    verified = ec_world.store().resolve(
        thumbprint(ec_world.cardholder), bundle, roles.CARDHOLDER, SIG
    )
    assert verified.chain_thumbs[1] == cca.thumbprint
    assert not set(checked) & set(fakes)


def _self_issued(world: World, signer: rsa.RSAPrivateKey, count: int) -> list[bytes]:
    """``count`` self-issued certificates named as the Cardholder CA, each of its own key."""
    cca = world.brand.cardholder_ca.ca.certificate.subject
    keys = [_public_key(2048, RSA_PUBLIC_EXPONENT) for _ in range(count)]
    return [_certificate(cca, cca, key, signer, ca=True) for key in keys]


@pytest.mark.parametrize("kind", ["off-list-key", "self-issued"])
def test_the_retry_passes_over_what_path_building_passes_over(
    ec_world: World, signer: rsa.RSAPrivateKey, kind: str
) -> None:
    # A look-alike with the real CA's name and key "signed" the leaf and leads nowhere, so
    # the first path fails and each candidate issuer is tried alone. Four candidates
    # path building never uses, ahead of them in the bundle, used to take all four places
    # of that retry: the genuine chain was refused.
    cca = ec_world.brand.cardholder_ca.ca
    nowhere = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nowhere")])
    real_key = cca.certificate.public_key()
    assert isinstance(real_key, ec.EllipticCurvePublicKey)
    same_key = _certificate(cca.certificate.subject, nowhere, real_key, signer, ca=True)
    ignored = (
        _look_alikes(ec_world, signer, _public_key(3072, HUGE_EXPONENT), MAX_ISSUER_CANDIDATES)
        if kind == "off-list-key"
        else _self_issued(ec_world, signer, MAX_ISSUER_CANDIDATES)
    )
    bundle = crypto_pb2.CertBundle(certificates=[ec_world.cardholder, *ignored, same_key, cca.der])

    verified = ec_world.store().resolve(
        thumbprint(ec_world.cardholder), bundle, roles.CARDHOLDER, SIG
    )
    assert verified.chain_thumbs[1] == cca.thumbprint
