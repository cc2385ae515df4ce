"""Chain validation: every role accepted, every check refusing with its own code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsm.base import KeyHandle, KeyUsage
from setcore.encoding import thumbprint
from setcore.envelope import open_sealed, seal
from setcore.errors import ErrorCode
from setcore.pki import (
    TrustStore,
    create_brand,
    issue_gateway,
    issue_merchant,
    issue_tls_server,
    roles,
)
from setcore.pki.issuance import sign_with_backend
from setcore.signers import signer
from setpay.v1 import crypto_pb2

from .conftest import KEX, MERCHANT, SIG, World, cca_bundle, later, mca_bundle, pca_bundle, refused

# -- accepted -------------------------------------------------------------------------


def test_every_role_verifies(world: World, store: TrustStore) -> None:
    card = store.verify_chain(world.cardholder, cca_bundle(world), roles.CARDHOLDER, SIG)
    assert card.blinded_account is not None and len(card.blinded_account) == 32
    assert card.merchant_data is None and card.kem is None
    merchant = store.verify_chain(
        world.merchant_sig, mca_bundle(world), roles.MERCHANT, "signature"
    )
    assert merchant.merchant_data == MERCHANT and merchant.subject_id == "m-0001"
    merchant_kex = store.verify_chain(world.merchant_kex, mca_bundle(world), roles.MERCHANT, KEX)
    assert merchant_kex.kem is not None and merchant_kex.usage is KEX
    gateway = store.verify_chain(world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY, SIG)
    assert gateway.certificate_type == roles.PAYMENT_GATEWAY
    assert gateway.chain_thumbs[-1] == store.root_thumb
    assert len(gateway.chain_thumbs) == 3
    assert gateway.brand_id == "testbrand"
    assert gateway.not_after <= world.brand.gateway_ca.ca.certificate.not_valid_after_utc


def test_ca_certificates_verify_in_their_roles(world: World, store: TrustStore) -> None:
    for sub, kind in zip(
        world.brand.subordinates,
        (roles.CARDHOLDER_CA, roles.MERCHANT_CA, roles.PAYMENT_GATEWAY_CA),
        strict=True,
    ):
        store.verify_chain(sub.key_exchange_der, [sub.ca.der], kind, KEX)
        store.verify_chain(sub.ca.der, [], kind, SIG)
    root = store.verify_chain(world.root.der, [], roles.BRAND_ROOT, SIG)
    assert root.chain_thumbs == (store.root_thumb,)


def test_recipient_seals_to_the_key_holder(world: World, store: TrustStore) -> None:
    verified = store.verify_chain(world.gateway_kex, pca_bundle(world), roles.PAYMENT_GATEWAY, KEX)
    recipient = verified.recipient()
    assert recipient.cert_thumb == verified.thumbprint
    assert recipient.kem is world.gateway_kex_key.kem or recipient.kem.value.startswith("p256")
    sealed = seal("setpay.v1.Test", b"payment instructions", recipient)
    opened = open_sealed(
        sealed, world.backend, world.gateway_kex_key, verified.thumbprint, "setpay.v1.Test"
    )
    assert opened.plaintext == b"payment instructions"
    signature = store.verify_chain(world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY, SIG)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, signature.recipient)


def test_repr_shows_no_key_material(world: World, store: TrustStore) -> None:
    card = store.verify_chain(world.cardholder, cca_bundle(world), roles.CARDHOLDER, SIG)
    text = repr(card)
    assert "CERTIFICATE_TYPE_CARDHOLDER" in text
    assert card.blinded_account is not None
    assert card.blinded_account.hex() not in text and repr(card.blinded_account) not in text


# -- roles ------------------------------------------------------------------------------


def test_wrong_certificate_type_refused(world: World, store: TrustStore) -> None:
    reason = refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.merchant_sig,
        mca_bundle(world),
        roles.CARDHOLDER,
        SIG,
    )
    assert "CERTIFICATE_TYPE_MERCHANT where CERTIFICATE_TYPE_CARDHOLDER" in reason


def test_merchant_key_exchange_refused_where_gateway_required(
    world: World, store: TrustStore
) -> None:
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.merchant_kex,
        mca_bundle(world),
        roles.PAYMENT_GATEWAY,
        KEX,
    )


def test_signature_certificate_refused_where_key_exchange_required(
    world: World, store: TrustStore
) -> None:
    reason = refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.gateway_sig,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        KEX,
    )
    assert "signature certificate where key-exchange" in reason
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.gateway_kex,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        SIG,
    )
    # A CA key is never a key-exchange key either.
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.brand.merchant_ca.ca.der,
        [],
        roles.MERCHANT_CA,
        KEX,
    )


def _forge_with_wrong_ca(world: World, certificate_type: int, issuer_index: int) -> bytes:
    """A certificate of ``certificate_type`` signed by a CA of the wrong kind."""
    from setcore.pki import extensions
    from setcore.pki.issuance import key_usage, random_serial

    ca = world.cas[issuer_index]
    key = world.key(KeyUsage.SIGNATURE)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key)
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(key_usage(signature=True), True)
        .add_extension(extensions.certificate_type_extension(certificate_type), False)
        .add_extension(extensions.brand_extension(ca.brand_id), False)
        .add_extension(extensions.merchant_data_extension(MERCHANT), False)
        .add_extension(extensions.blinded_account_extension(b"\x00" * 32), False)
    )
    return sign_with_backend(builder, ca.backend, ca.key).public_bytes(Encoding.DER)


def test_merchant_certificate_from_cardholder_ca_refused(world: World, store: TrustStore) -> None:
    forged = _forge_with_wrong_ca(world, roles.MERCHANT, issuer_index=0)
    reason = refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        forged,
        cca_bundle(world),
        roles.MERCHANT,
        SIG,
    )
    assert "issued by a CERTIFICATE_TYPE_CARDHOLDER_CA" in reason


def test_cardholder_certificate_from_gateway_ca_refused(world: World, store: TrustStore) -> None:
    forged = _forge_with_wrong_ca(world, roles.CARDHOLDER, issuer_index=2)
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        forged,
        pca_bundle(world),
        roles.CARDHOLDER,
        SIG,
    )


def test_tls_certificate_is_no_set_certificate(world: World, store: TrustStore) -> None:
    tls = issue_tls_server(world.brand.gateway_ca.ca)
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        tls.certificate_der,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        SIG,
    )


# -- validity ---------------------------------------------------------------------------


def test_expired_certificate_refused(world: World, store: TrustStore) -> None:
    key = world.key(KeyUsage.SIGNATURE)
    expired = issue_gateway(
        world.brand.gateway_ca.ca,
        key.public_key,
        SIG,
        "old",
        at=datetime.now(UTC) - timedelta(days=30),
        lifetime=timedelta(days=10),
    )
    refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.verify_chain,
        expired,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        SIG,
    )


def test_a_signer_is_resolved_as_of_the_instant_asked(world: World) -> None:
    # A decided request's answer is rebuilt as of its decision: its signer's certificate
    # is judged at that instant, not now. (No revocation data covers a month ahead, so
    # this store does without it.)
    store = TrustStore(world.root.der, require_revocation=False)
    key = world.key(KeyUsage.SIGNATURE)
    future = issue_gateway(world.brand.gateway_ca.ca, key.public_key, SIG, "future", at=later(30))
    signature = crypto_pb2.Signature(signer_cert_thumb=thumbprint(future))
    bundle = crypto_pb2.CertBundle(certificates=[future, *pca_bundle(world)])
    _, verified = signer(store, roles.PAYMENT_GATEWAY, at=later(31))(signature, bundle)
    assert verified.subject_id == "future"
    refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        signer(store, roles.PAYMENT_GATEWAY),
        signature,
        bundle,
    )


def test_not_yet_valid_certificate_refused(world: World, store: TrustStore) -> None:
    key = world.key(KeyUsage.SIGNATURE)
    future = issue_gateway(world.brand.gateway_ca.ca, key.public_key, SIG, "future", at=later(30))
    refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.verify_chain,
        future,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        SIG,
    )


def test_expired_ca_refused(world: World) -> None:
    store = TrustStore(world.root.der, require_revocation=False)
    # Past the CA's notAfter: the leaf was clipped to it, so the whole chain is expired.
    at = world.brand.merchant_ca.ca.certificate.not_valid_after_utc + timedelta(seconds=1)
    refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.verify_chain,
        world.brand.merchant_ca.key_exchange_der,
        mca_bundle(world),
        roles.MERCHANT_CA,
        KEX,
        at=at,
    )


# -- signatures and chains ----------------------------------------------------------------


def test_tampered_certificate_signature_refused(world: World, store: TrustStore) -> None:
    tampered = bytearray(world.merchant_sig)
    tampered[-2] ^= 0x40  # inside the signature value
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        bytes(tampered),
        mca_bundle(world),
        roles.MERCHANT,
        SIG,
    )
    assert "signature does not verify" in reason


def test_tampered_ca_certificate_refused(world: World, store: TrustStore) -> None:
    tampered = bytearray(world.brand.merchant_ca.ca.der)
    tampered[-3] ^= 0x01
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        world.merchant_sig,
        [bytes(tampered)],
        roles.MERCHANT,
        SIG,
    )


def test_missing_intermediate_refused(world: World, store: TrustStore) -> None:
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        world.merchant_sig,
        [],
        roles.MERCHANT,
        SIG,
    )
    assert "no chain to the pinned brand root" in reason


def test_garbage_refused(store: TrustStore) -> None:
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        b"\x30\x03\x02\x01\x00",
        [],
        roles.MERCHANT,
        SIG,
    )


def test_chain_of_a_look_alike_brand_refused(world: World, store: TrustStore) -> None:
    # Same brand name, same subject names, different keys: names match, signatures do not.
    other = create_brand(
        world.backend, world.profile, "testbrand", label_prefix=f"{world.profile.name}-evil-"
    )
    key = world.key(KeyUsage.SIGNATURE)
    evil = issue_merchant(other.merchant_ca.ca, key.public_key, SIG, MERCHANT)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        evil,
        [other.merchant_ca.ca.der, other.root.der],
        roles.MERCHANT,
        SIG,
    )
    assert "signature does not verify" in reason


def test_root_must_be_a_setpay_brand_root(world: World) -> None:
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, TrustStore, world.brand.merchant_ca.ca.der)


# -- structure ------------------------------------------------------------------------------


def _leaf_builder(
    world: World,
    issuer: x509.Name,
    certificate_type: int,
    key: KeyHandle | None = None,
    common_name: str = "odd",
    brand: str | None = None,
) -> x509.CertificateBuilder:
    from setcore.pki import extensions
    from setcore.pki.issuance import key_usage, random_serial

    public_key = (key or world.key(KeyUsage.SIGNATURE)).public_key
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(key_usage(signature=True), True)
        .add_extension(extensions.certificate_type_extension(certificate_type), False)
        .add_extension(extensions.brand_extension(brand or world.root.brand_id), False)
        .add_extension(extensions.merchant_data_extension(MERCHANT), False)
    )


def test_issuer_that_is_no_ca_refused(world: World, store: TrustStore) -> None:
    # A "Merchant CA" certificate from the root that is not a CA (cA=FALSE) signs a leaf.
    fake_key = world.key(KeyUsage.SIGNATURE)
    fake = _leaf_builder(
        world, world.root.certificate.subject, roles.MERCHANT_CA, fake_key, "fake CA"
    ).add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    fake_der = sign_with_backend(fake, world.backend, world.root.key).public_bytes(Encoding.DER)
    leaf = _leaf_builder(
        world, x509.load_der_x509_certificate(fake_der).subject, roles.MERCHANT
    ).add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    leaf_der = sign_with_backend(leaf, world.backend, fake_key).public_bytes(Encoding.DER)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        leaf_der,
        [fake_der],
        roles.MERCHANT,
        SIG,
    )
    assert "issuer is not a CA" in reason


def test_unknown_critical_extension_refused(world: World, store: TrustStore) -> None:
    mca = world.brand.merchant_ca.ca
    builder = (
        _leaf_builder(world, mca.certificate.subject, roles.MERCHANT)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
    )
    der = sign_with_backend(builder, mca.backend, mca.key).public_bytes(Encoding.DER)
    refused(
        ErrorCode.ERROR_CODE_UNRECOGNIZED_EXTENSION,
        store.verify_chain,
        der,
        mca_bundle(world),
        roles.MERCHANT,
        SIG,
    )


def test_signature_algorithm_off_the_allow_list_refused(world: World, store: TrustStore) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    mca = world.brand.merchant_ca.ca
    builder = _leaf_builder(world, mca.certificate.subject, roles.MERCHANT).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), True
    )
    sha384 = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA384())
    pss_salt_20 = builder.sign(
        rsa.generate_private_key(65537, 2048),
        hashes.SHA256(),
        rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20),
    )
    pkcs1 = builder.sign(rsa.generate_private_key(65537, 2048), hashes.SHA256())
    for cert in (sha384, pss_salt_20, pkcs1):
        refused(
            ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
            store.verify_chain,
            cert.public_bytes(Encoding.DER),
            mca_bundle(world),
            roles.MERCHANT,
            SIG,
        )


def test_end_entity_marked_ca_refused(world: World, store: TrustStore) -> None:
    mca = world.brand.merchant_ca.ca
    builder = _leaf_builder(world, mca.certificate.subject, roles.MERCHANT).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), True
    )
    der = sign_with_backend(builder, mca.backend, mca.key).public_bytes(Encoding.DER)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        der,
        mca_bundle(world),
        roles.MERCHANT,
        SIG,
    )
    assert "marked as a CA" in reason


def test_certificate_of_another_brand_refused(world: World, store: TrustStore) -> None:
    mca = world.brand.merchant_ca.ca
    builder = _leaf_builder(world, mca.certificate.subject, roles.MERCHANT, brand="otherbrand")
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    der = sign_with_backend(builder, mca.backend, mca.key).public_bytes(Encoding.DER)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        der,
        mca_bundle(world),
        roles.MERCHANT,
        SIG,
    )
    assert "another brand" in reason


def test_a_certificate_restricted_to_other_purposes_is_refused(
    world: World, store: TrustStore
) -> None:
    # An extendedKeyUsage limits a certificate to the purposes it lists (RFC 5280
    # 4.2.1.12); setpay defines none, so one limited to TLS is no SET certificate.
    from cryptography.x509.oid import ExtendedKeyUsageOID

    mca = world.brand.merchant_ca.ca
    for purposes, critical in (
        ([ExtendedKeyUsageOID.SERVER_AUTH], False),
        ([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.CODE_SIGNING], False),
        ([ExtendedKeyUsageOID.SERVER_AUTH], True),
    ):
        builder = (
            _leaf_builder(world, mca.certificate.subject, roles.MERCHANT)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.ExtendedKeyUsage(purposes), critical=critical)
        )
        der = sign_with_backend(builder, mca.backend, mca.key).public_bytes(Encoding.DER)
        reason = refused(
            ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
            store.verify_chain,
            der,
            mca_bundle(world),
            roles.MERCHANT,
            SIG,
        )
        assert "extendedKeyUsage" in reason
    # anyExtendedKeyUsage restricts nothing.
    builder = (
        _leaf_builder(world, mca.certificate.subject, roles.MERCHANT)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), False)
    )
    der = sign_with_backend(builder, mca.backend, mca.key).public_bytes(Encoding.DER)
    store.verify_chain(der, mca_bundle(world), roles.MERCHANT, SIG)
