"""Chain checks no other test could fail: each certificate here is valid but for one thing.

Leaves are issued by the brand's real CAs (so revocation and every other check pass);
the path-length and keyCertSign checks need a root and CA made for the test, with
revocation not required, so that nothing but the check under test can refuse them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from hsm.base import KemAlgorithm
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki import TrustStore, extensions, issue_ca_certificate, roles
from setcore.pki.certificate import common_name_of, load_certificate
from setcore.pki.chain import (
    MAX_CHAIN_CERTIFICATES,
    MAX_ISSUER_CANDIDATES,
    Anchor,
    Candidate,
    build_path,
)
from setcore.pki.crl import load_crl, verify_crl_issuer
from setcore.pki.issuance import IssuingCA, key_usage, random_serial, sign_with_backend
from setcore.pki.roles import CertificateUsage

from .conftest import KEX, MERCHANT, SIG, World, refused

P256 = KemAlgorithm.P256_HKDF_SHA256


def _builder(
    subject: str,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    certificate_type: int,
    usage: x509.KeyUsage,
    brand: str,
    *,
    path_length: int | None = None,
    ca: bool = False,
    extra: Sequence[x509.ExtensionType] = (),
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), True)
        .add_extension(usage, True)
        .add_extension(extensions.certificate_type_extension(certificate_type), False)
        .add_extension(extensions.brand_extension(brand), False)
    )
    for extension in extra:
        builder = builder.add_extension(extension, False)
    return builder


def _issued_by(ca: IssuingCA, builder: x509.CertificateBuilder) -> bytes:
    return sign_with_backend(builder, ca.backend, ca.key).public_bytes(Encoding.DER)


# --- each property a leaf must have (chain._check_leaf_extensions) ----------------------


def _ec_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


@pytest.mark.parametrize(
    ("case", "usage", "says"),
    [
        ("key exchange without a KEM", KEX, "names no KEM"),
        ("EC key exchange without keyAgreement", KEX, "without keyAgreement"),
        ("RSA key exchange without keyEncipherment", KEX, "without keyEncipherment"),
        ("signature naming a KEM", SIG, "signature certificate names a KEM"),
        ("merchant without merchantData", SIG, "without merchantData"),
        ("cardholder without a blinded account", SIG, "without a blinded account"),
    ],
)
def test_a_leaf_lacking_one_property_is_refused(
    ec_world: World, case: str, usage: CertificateUsage, says: str
) -> None:
    merchant_data = extensions.merchant_data_extension(MERCHANT)
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey = _ec_key()
    certificate_type, ca = roles.MERCHANT, ec_world.brand.merchant_ca.ca
    if case == "key exchange without a KEM":
        key_use, extra = key_usage(agree=True), [merchant_data]
    elif case == "EC key exchange without keyAgreement":
        key_use, extra = key_usage(encipher=True), [merchant_data, extensions.kem_extension(P256)]
    elif case == "RSA key exchange without keyEncipherment":
        key = rsa.generate_private_key(65537, 2048).public_key()
        kem = extensions.kem_extension(KemAlgorithm.RSA_OAEP_SHA256)
        key_use, extra = key_usage(agree=True), [merchant_data, kem]
    elif case == "signature naming a KEM":
        key_use, extra = key_usage(signature=True), [merchant_data, extensions.kem_extension(P256)]
    elif case == "merchant without merchantData":
        key_use, extra = key_usage(signature=True), []
    else:
        certificate_type, ca = roles.CARDHOLDER, ec_world.brand.cardholder_ca.ca
        key_use, extra = key_usage(signature=True), []
    builder = _builder(
        "odd", ca.certificate.subject, key, certificate_type, key_use, ca.brand_id, extra=extra
    )
    der = _issued_by(ca, builder)
    store = ec_world.store()
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain, der, [ca.der], certificate_type, usage,
    )  # fmt: skip
    assert says in reason


def test_the_same_leaves_with_every_property_verify(ec_world: World) -> None:
    # So that each refusal above is for the one property it lacks.
    mca = ec_world.brand.merchant_ca.ca
    merchant_data = extensions.merchant_data_extension(MERCHANT)
    kex = _builder(
        "odd", mca.certificate.subject, _ec_key(), roles.MERCHANT, key_usage(agree=True),
        mca.brand_id, extra=[merchant_data, extensions.kem_extension(P256)],
    )  # fmt: skip
    ec_world.store().verify_chain(_issued_by(mca, kex), [mca.der], roles.MERCHANT, KEX)
    sig = _builder(
        "odd", mca.certificate.subject, _ec_key(), roles.MERCHANT, key_usage(signature=True),
        mca.brand_id, extra=[merchant_data],
    )  # fmt: skip
    ec_world.store().verify_chain(_issued_by(mca, sig), [mca.der], roles.MERCHANT, SIG)


# --- the shape of the path (chain.build_path and chain._check_issuers) -------------------


def test_a_chain_longer_than_the_brand_tree_is_refused(ec_world: World) -> None:
    # leaf <- a CA under the Merchant CA <- the Merchant CA <- root: one level too many.
    mca = ec_world.brand.merchant_ca.ca
    sub_key = ec.generate_private_key(ec.SECP256R1())
    sub = _issued_by(
        mca,
        _builder(
            "sub CA", mca.certificate.subject, sub_key.public_key(), roles.MERCHANT_CA,
            key_usage(ca=True), mca.brand_id, ca=True, path_length=0,
        ),
    )  # fmt: skip
    leaf = _builder(
        "odd", x509.load_der_x509_certificate(sub).subject, _ec_key(), roles.MERCHANT,
        key_usage(signature=True), mca.brand_id,
        extra=[extensions.merchant_data_extension(MERCHANT)],
    ).sign(sub_key, hashes.SHA256())  # fmt: skip
    assert MAX_CHAIN_CERTIFICATES == 3
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        ec_world.store().verify_chain,
        leaf.public_bytes(Encoding.DER), [sub, mca.der], roles.MERCHANT, SIG,
    )  # fmt: skip
    assert "chain too long" in reason


@pytest.mark.parametrize("others", [MAX_ISSUER_CANDIDATES - 1, MAX_ISSUER_CANDIDATES])
def test_no_more_issuer_candidates_than_the_bound_are_tried(ec_world: World, others: int) -> None:
    # Certificates under the Merchant CA's name with other keys come first; the real one
    # after them is reached while fewer than MAX_ISSUER_CANDIDATES stand before it, and
    # not otherwise (the TrustStore's one-at-a-time retries stop at the same bound).
    mca = ec_world.brand.merchant_ca.ca
    common_name = common_name_of(mca.certificate)

    def candidate(der: bytes) -> Candidate:
        return Candidate(der, load_certificate(der), thumbprint(der))

    strangers = [
        candidate(issue_ca_certificate(
            ec_world.root, _ec_key(), roles.MERCHANT_CA, common_name=common_name
        ))
        for _ in range(others)
    ]  # fmt: skip
    real = candidate(mca.der)

    def lookup(subject: x509.Name) -> list[Candidate]:
        return [*strangers, real] if subject == mca.certificate.subject else []

    anchor = Anchor.from_der(ec_world.root.der, ec_world.root.thumbprint)
    leaf = candidate(ec_world.merchant_sig)
    if others < MAX_ISSUER_CANDIDATES:
        assert [c.thumb for c in build_path(anchor, leaf, lookup)][1] == real.thumb
    else:
        with pytest.raises(ProtocolError, match="signature does not verify"):
            build_path(anchor, leaf, lookup)


BRAND = "testbrand"


def _own_tree(
    *,
    root_path_length: int,
    ca_usage: x509.KeyUsage,
    ca_extra: Sequence[x509.ExtensionType] = (),
) -> tuple[TrustStore, bytes, bytes]:
    """A root, a Merchant CA and a merchant leaf made here: (store, leaf, CA)."""
    root_key, ca_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root_name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "test root")])
    root = _builder(
        "test root", root_name, root_key.public_key(), roles.BRAND_ROOT, key_usage(ca=True),
        BRAND, ca=True, path_length=root_path_length,
    ).sign(root_key, hashes.SHA256())  # fmt: skip
    ca = _builder(
        "test MCA", root_name, ca_key.public_key(), roles.MERCHANT_CA, ca_usage, BRAND,
        ca=True, path_length=0, extra=ca_extra,
    ).sign(root_key, hashes.SHA256())  # fmt: skip
    leaf = _builder(
        "odd", ca.subject, _ec_key(), roles.MERCHANT, key_usage(signature=True), BRAND,
        extra=[extensions.merchant_data_extension(MERCHANT)],
    ).sign(ca_key, hashes.SHA256())  # fmt: skip
    store = TrustStore(root.public_bytes(Encoding.DER), require_revocation=False)
    return store, leaf.public_bytes(Encoding.DER), ca.public_bytes(Encoding.DER)


def test_a_tree_made_here_verifies() -> None:
    # So that each refusal below is for the one thing changed.
    store, leaf, ca = _own_tree(root_path_length=1, ca_usage=key_usage(ca=True))
    assert store.verify_chain(leaf, [ca], roles.MERCHANT, SIG).merchant_data == MERCHANT


def test_a_root_path_length_constraint_is_enforced() -> None:
    store, leaf, ca = _own_tree(root_path_length=0, ca_usage=key_usage(ca=True))
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain, leaf, [ca], roles.MERCHANT, SIG,
    )  # fmt: skip
    assert "path length" in reason


def test_an_issuer_without_key_cert_sign_is_refused() -> None:
    store, leaf, ca = _own_tree(root_path_length=1, ca_usage=key_usage(signature=True))
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain, leaf, [ca], roles.MERCHANT, SIG,
    )  # fmt: skip
    assert "may not sign certificates" in reason


def test_a_ca_limited_to_other_purposes_cannot_vouch_for_a_set_certificate() -> None:
    # An extendedKeyUsage on a CA limits what its subtree is for (TLS here), not only
    # what the CA's own key does.
    server_auth = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    store, leaf, ca = _own_tree(
        root_path_length=1, ca_usage=key_usage(ca=True), ca_extra=[server_auth]
    )
    reason = refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain, leaf, [ca], roles.MERCHANT, SIG,
    )  # fmt: skip
    assert "test MCA" in reason and "extendedKeyUsage" in reason


# --- the pinned root (chain.Anchor.from_der, through TrustStore) ------------------------


def _root(
    *,
    certificate_type: int | None = roles.BRAND_ROOT,
    brand: str | None = BRAND,
    issuer: str = "test root",
    signer: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """A root made here, a setpay brand root but for what the arguments change: another
    certificateType or none, no brandId, another issuer name, or signed by another key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])

    builder = (
        x509.CertificateBuilder()
        .subject_name(name("test root"))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
        .add_extension(key_usage(ca=True), True)
    )
    if certificate_type is not None:
        builder = builder.add_extension(
            extensions.certificate_type_extension(certificate_type), False
        )
    if brand is not None:
        builder = builder.add_extension(extensions.brand_extension(brand), False)
    return builder.sign(signer or key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_a_root_made_here_is_pinned() -> None:
    # So that each refusal below is for the one thing changed.
    assert TrustStore(_root(), require_revocation=False).brand_id == BRAND


@pytest.mark.parametrize("case", ["signed by another key", "issued by another root"])
def test_a_root_that_is_not_self_signed_is_refused(case: str) -> None:
    # A brand root in every other way (type, brandId, subject), so that only the
    # signature check can refuse it.
    other = ec.generate_private_key(ec.SECP256R1())
    issuer = "test root" if case == "signed by another key" else "other root"
    der = _root(issuer=issuer, signer=other)
    reason = refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, TrustStore, der)
    assert reason == "root is not self-signed"


@pytest.mark.parametrize("case", ["Merchant CA type", "no certificateType", "no brandId"])
def test_a_self_signed_root_that_is_no_brand_root_is_refused(case: str) -> None:
    if case == "Merchant CA type":
        der = _root(certificate_type=roles.MERCHANT_CA)
    elif case == "no certificateType":
        der = _root(certificate_type=None)
    else:
        der = _root(brand=None)
    reason = refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, TrustStore, der)
    assert reason == "not a setpay brand root"


# --- CRLs (crl.verify_crl_issuer) --------------------------------------------------------


def test_a_crl_naming_its_issuer_but_signed_by_another_key_is_refused(ec_world: World) -> None:
    mca = ec_world.brand.merchant_ca.ca
    now = datetime.now(UTC)
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(mca.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .add_extension(x509.CRLNumber(2), False)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    crl = load_crl(forged.public_bytes(Encoding.DER))
    verify_crl_issuer(load_crl(ec_world.crls[2]), mca.certificate)  # the real one verifies
    reason = refused(
        ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_crl_issuer, crl, mca.certificate
    )
    assert "does not verify" in reason
