"""Malformed certificates and CRLs a verifier relies on refusing, each for its own reason.

Every certificate here is issued by the brand's real CAs and valid but for the one thing
under test (SET-PROTOCOL.md 9.3.13: the role of a certificate is read from its keyUsage
and setpay certificateType; 2.5: the blinded account; 2.7: a CRL's cRLNumber ties it to
the BCI). Without each check the input would pass, or fail later for another reason, so
each test asserts the code and the words of the refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, x25519
from cryptography.hazmat.primitives.serialization import Encoding

from setcore.encoding import thumbprint
from setcore.errors import ErrorCode
from setcore.pki import TrustStore, der, extensions, issue_brand_crl_identifier, roles
from setcore.pki.backend_key import backend_private_key
from setcore.pki.certificate import MAX_CERTIFICATE_BYTES, load_certificate, public_key_of
from setcore.pki.crl import verify_crl_issuer
from setcore.pki.issuance import IssuingCA, key_usage, random_serial, sign_with_backend
from setcore.pki.truststore import MAX_BUNDLE_CERTIFICATES
from setpay.v1 import crypto_pb2
from tests.setcore.refusals import refused

from .conftest import MERCHANT, SIG, World
from .test_bci import _pairs, _sign, _tbs

_ONLY_NON_REPUDIATION = x509.KeyUsage(
    digital_signature=False,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


_SIGNATURE_ONLY = key_usage(signature=True)


def _ec_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def _merchant_leaf(
    world: World,
    *,
    usage: x509.KeyUsage | None = _SIGNATURE_ONLY,
    certificate_type: int | None = roles.MERCHANT,
    public_key: object = None,
    extra: Sequence[x509.ExtensionType] = (),
) -> tuple[bytes, IssuingCA]:
    """A merchant signature certificate issued by the brand's Merchant CA, with ``usage``
    and ``certificate_type`` (None: the extension left out) and ``extra`` extensions."""
    ca = world.brand.merchant_ca.ca
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "odd")]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key or _ec_key())  # type: ignore[arg-type]
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(extensions.brand_extension(ca.brand_id), False)
        .add_extension(extensions.merchant_data_extension(MERCHANT), False)
    )
    if usage is not None:
        builder = builder.add_extension(usage, True)
    if certificate_type is not None:
        builder = builder.add_extension(
            extensions.certificate_type_extension(certificate_type), False
        )
    for extension in extra:
        builder = builder.add_extension(extension, False)
    return sign_with_backend(builder, ca.backend, ca.key).public_bytes(Encoding.DER), ca


def _verify_merchant(world: World, der: bytes, ca: IssuingCA) -> str:
    """The INVALID_CERTIFICATE reason the trust store gives for the merchant leaf ``der``."""
    return refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        world.store().verify_chain, der, [ca.der], roles.MERCHANT, SIG,
    )  # fmt: skip


# --- role: keyUsage and certificateType (chain._key_usage, usage_of, _check_every) -----


def test_the_merchant_leaf_built_here_verifies(ec_world: World) -> None:
    # Guards the builder: with every property in place the leaf passes, so each refusal
    # below is for the one property taken away.
    der, ca = _merchant_leaf(ec_world)
    verified = ec_world.store().verify_chain(der, [ca.der], roles.MERCHANT, SIG)
    assert verified.certificate_type == roles.MERCHANT


def test_a_certificate_without_key_usage_is_refused(ec_world: World) -> None:
    # Without keyUsage nothing says whether the key signs or exchanges keys (9.3.13).
    der, ca = _merchant_leaf(ec_world, usage=None)
    assert _verify_merchant(ec_world, der, ca) == "certificate has no keyUsage"


@pytest.mark.parametrize(
    "usage",
    [
        pytest.param(key_usage(signature=True, agree=True), id="both-signature-and-agreement"),
        pytest.param(key_usage(signature=True, encipher=True), id="both-signature-and-encipher"),
        pytest.param(_ONLY_NON_REPUDIATION, id="neither"),
    ],
)
def test_a_key_usage_neither_only_signature_nor_only_key_exchange_is_refused(
    ec_world: World, usage: x509.KeyUsage
) -> None:
    # setpay keeps signature and key-exchange keys apart: a certificate is one or the other.
    der, ca = _merchant_leaf(ec_world, usage=usage)
    assert _verify_merchant(ec_world, der, ca) == "keyUsage is neither signature nor key exchange"


def test_a_certificate_without_a_certificate_type_is_refused(ec_world: World) -> None:
    # The certificateType is what says merchant, not cardholder or gateway (9.3.13).
    der, ca = _merchant_leaf(ec_world, certificate_type=None)
    assert _verify_merchant(ec_world, der, ca) == "certificate has no setpay certificateType"


# --- the certificate itself (setcore.pki.certificate) -----------------------------------


@pytest.mark.parametrize(
    "public_key",
    [
        pytest.param(lambda: ed448.Ed448PrivateKey.generate().public_key(), id="ed448"),
        pytest.param(lambda: x25519.X25519PrivateKey.generate().public_key(), id="x25519"),
    ],
)
def test_a_certificate_with_a_key_type_off_the_allow_list_is_refused_for_its_type(
    ec_world: World, public_key: object
) -> None:
    der, ca = _merchant_leaf(ec_world, public_key=public_key())  # type: ignore[operator]
    reason = refused(
        ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
        ec_world.store().verify_chain, der, [ca.der], roles.MERCHANT, SIG,
    )  # fmt: skip
    assert reason == "public key type not allowed"
    reason = refused(
        ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
        public_key_of,
        x509.load_der_x509_certificate(der),
    )
    assert reason == "public key type not allowed"


def test_a_certificate_over_the_size_bound_is_refused_before_it_is_parsed(
    ec_world: World,
) -> None:
    # A well-formed certificate, issued by the brand, only too big: the bound alone refuses it.
    padding = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.55555.9"),
        b"\x04\x82" + (20000).to_bytes(2) + bytes(20000),
    )
    der, ca = _merchant_leaf(ec_world, extra=[padding])
    assert len(der) > MAX_CERTIFICATE_BYTES
    x509.load_der_x509_certificate(der)  # well-formed
    reason = refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, load_certificate, der)
    assert reason == f"certificate of {len(der)} bytes"
    assert _verify_merchant(ec_world, der, ca) == f"certificate of {len(der)} bytes"


def test_a_certificate_of_another_version_than_v3_is_refused(ec_world: World) -> None:
    # The merchant certificate with its version field ([0] EXPLICIT, v3) taken out: an
    # X.509 v1 certificate, well-formed DER that cryptography parses, refused by setpay
    # (SET certificates are v3, their roles live in extensions).
    _, body, _ = der.read(ec_world.merchant_sig)
    _, tbs, after_tbs = der.read(body)
    tag, _, after_version = der.read(tbs)
    assert tag == 0xA0
    v1 = der.encode(der.SEQUENCE, der.encode(der.SEQUENCE, tbs[after_version:]) + body[after_tbs:])
    assert x509.load_der_x509_certificate(v1).version is x509.Version.v1
    reason = refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, load_certificate, v1)
    assert reason == "not an X.509 v3 certificate"
    mca = ec_world.brand.merchant_ca.ca
    assert _verify_merchant(ec_world, v1, mca) == "not an X.509 v3 certificate"


# --- SET extensions (setcore.pki.extensions) --------------------------------------------


def test_a_cardholder_certificate_with_a_malformed_blinded_account_is_refused(
    ec_world: World,
) -> None:
    # 2.5: the blinded account is an OCTET STRING of 32 bytes; a UTF8String is malformed.
    cca = ec_world.brand.cardholder_ca.ca
    now = datetime.now(UTC)
    malformed = x509.UnrecognizedExtension(
        extensions.BLINDED_ACCOUNT_OID, bytes([0x0C, 32]) + b"a" * 32
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "odd")]))
        .issuer_name(cca.certificate.subject)
        .public_key(_ec_key())
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(key_usage(signature=True), True)
        .add_extension(extensions.certificate_type_extension(roles.CARDHOLDER), False)
        .add_extension(extensions.brand_extension(cca.brand_id), False)
        .add_extension(malformed, False)
    )
    der = sign_with_backend(builder, cca.backend, cca.key).public_bytes(Encoding.DER)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        ec_world.store().verify_chain, der, [cca.der], roles.CARDHOLDER, SIG,
    )  # fmt: skip
    assert reason.startswith("malformed blindedAccount extension")


# --- CRLs (setcore.pki.crl) ---------------------------------------------------------------


def _crl_without_number(ca: IssuingCA) -> bytes:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(days=7))
    )
    crl = builder.sign(backend_private_key(ca.backend, ca.key), hashes.SHA256())
    return crl.public_bytes(Encoding.DER)


def test_a_bci_naming_a_crl_without_a_crl_number_is_refused(ec_world: World) -> None:
    # 2.7: the BCI names each CA's CRL by number and thumbprint; a CRL with no number is
    # no CRL of that sequence, whatever number the BCI gives it (here 0, proto's default).
    pairs = _pairs(ec_world)
    mca = ec_world.brand.merchant_ca.ca
    numberless = _crl_without_number(mca)
    index = next(i for i, (issuer, _) in enumerate(pairs) if issuer == mca.der)
    tbs = _tbs(ec_world, 7, pairs)
    tbs.crls[index].crl_thumb = thumbprint(numberless)
    tbs.crls[index].crl_number = 0
    crls = [crl if i != index else numberless for i, (_, crl) in enumerate(pairs)]
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        TrustStore(ec_world.root.der).update_revocation,
        _sign(ec_world, tbs),
        crls,
    )
    assert reason == "CRL has no cRLNumber"


def test_the_brand_signs_no_bci_over_a_crl_without_a_crl_number(ec_world: World) -> None:
    mca = ec_world.brand.merchant_ca.ca
    pairs = [(mca.der, _crl_without_number(mca))]
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        issue_brand_crl_identifier, ec_world.root, 9, pairs,
    )  # fmt: skip
    assert reason == "CRL has no cRLNumber"


def test_a_crl_whose_issuer_key_cannot_verify_a_signature_is_refused(ec_world: World) -> None:
    # An issuer certificate whose key is no signature key at all (X25519): cryptography
    # raises rather than answer, and that is a refusal, not a crash.
    mca = ec_world.brand.merchant_ca.ca
    now = datetime.now(UTC)
    odd_issuer = sign_with_backend(
        x509.CertificateBuilder()
        .subject_name(mca.certificate.subject)
        .issuer_name(mca.certificate.subject)
        .public_key(x25519.X25519PrivateKey.generate().public_key())
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30)),
        mca.backend,
        mca.key,
    )
    crl = x509.load_der_x509_crl(_crl_without_number(mca))
    reason = refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_crl_issuer, crl, odd_issuer)
    assert reason == "CRL signature unusable"
    # The same CRL under the Merchant CA's own certificate verifies: only the key differs.
    verify_crl_issuer(crl, mca.certificate)


# --- bundle bound (TrustStore.resolve) ----------------------------------------------------


def test_a_signature_bundle_of_too_many_certificates_is_refused_before_any_lookup(
    ec_world: World,
) -> None:
    # Past the bound the bundle is refused as such, before its certificates are hashed
    # or the signer looked up (which would answer MISSING_CERTIFICATE here).
    bundle = crypto_pb2.CertBundle(
        certificates=[b"junk-%d" % i for i in range(MAX_BUNDLE_CERTIFICATES + 1)]
    )
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        ec_world.store().resolve, bytes(32), bundle, roles.MERCHANT, SIG,
    )  # fmt: skip
    assert reason == "too many certificates"
