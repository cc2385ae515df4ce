"""The BrandCRLIdentifier: what ``update_revocation`` accepts and what it refuses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes

from hsm.base import KeyHandle
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki import IssuingCA, RevocationUnavailable, TrustStore, issue_crl, roles
from setcore.pki.bci import BCI_CONTENT_TYPE
from setcore.signed import sign
from setpay.v1 import crypto_pb2, registration_pb2

from .conftest import SIG, World, later, refused


def _tbs(
    world: World, sequence_num: int, pairs: Sequence[tuple[bytes, bytes]], **overrides: object
) -> registration_pb2.BrandCRLIdentifierTBS:
    now = datetime.now(UTC)
    tbs = registration_pb2.BrandCRLIdentifierTBS(
        content_type=BCI_CONTENT_TYPE,
        brand_id=world.root.brand_id,
        sequence_num=sequence_num,
        not_before_unix_ms=int((now - timedelta(minutes=1)).timestamp() * 1000),
        not_after_unix_ms=int((now + timedelta(days=1)).timestamp() * 1000),
    )
    for issuer, crl in pairs:
        from cryptography import x509

        number = x509.load_der_x509_crl(crl).extensions.get_extension_for_class(x509.CRLNumber)
        tbs.crls.append(
            registration_pb2.CRLIdentifier(
                issuer_thumb=thumbprint(issuer),
                crl_number=number.value.crl_number,
                crl_thumb=thumbprint(crl),
            )
        )
    for name, value in overrides.items():
        setattr(tbs, name, value)
    return tbs


def _sign(
    world: World,
    tbs: registration_pb2.BrandCRLIdentifierTBS,
    key: KeyHandle | None = None,
    signer_thumb: bytes | None = None,
) -> bytes:
    root = world.root
    signed = sign(
        root.backend,
        key or root.key,
        signer_thumb or root.thumbprint,
        BCI_CONTENT_TYPE,
        tbs.SerializeToString(),
    )
    return signed.SerializeToString()


def _pairs(world: World) -> list[tuple[bytes, bytes]]:
    return [(ca.der, crl) for ca, crl in zip((world.root, *world.cas), world.crls, strict=True)]


def test_current_bci_accepted(world: World) -> None:
    store = TrustStore(world.root.der)
    assert store.update_revocation(world.bci, world.crls)
    assert not store.update_revocation(world.bci, world.crls)  # the same one again: no change
    snapshot = store.revocation
    assert snapshot is not None and snapshot.sequence_num == 1
    assert set(snapshot.by_issuer) == {ca.thumbprint for ca in (world.root, *world.cas)}


def test_handmade_bci_matches_issued_one(world: World) -> None:
    # Guards the test helpers below: a correct hand-made BCI is accepted.
    store = TrustStore(world.root.der)
    store.update_revocation(_sign(world, _tbs(world, 5, _pairs(world))), world.crls)


def test_tampered_bci_refused(world: World) -> None:
    signed = crypto_pb2.Signed()
    signed.ParseFromString(world.bci)
    tbs = registration_pb2.BrandCRLIdentifierTBS()
    tbs.ParseFromString(signed.tbs)
    tbs.sequence_num += 100
    signed.tbs = tbs.SerializeToString()
    store = TrustStore(world.root.der)
    refused(
        ErrorCode.ERROR_CODE_SIGNATURE_FAILURE,
        store.update_revocation,
        signed.SerializeToString(),
        world.crls,
    )


def test_bci_by_another_key_refused(world: World) -> None:
    store = TrustStore(world.root.der)
    mca: IssuingCA = world.brand.merchant_ca.ca
    tbs = _tbs(world, 2, _pairs(world))
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.update_revocation,
        _sign(world, tbs, key=mca.key, signer_thumb=mca.thumbprint),
        world.crls,
    )
    assert "pinned root" in reason
    # Claiming to be the root does not help: the root's key must have signed it.
    refused(
        ErrorCode.ERROR_CODE_SIGNATURE_FAILURE,
        store.update_revocation,
        _sign(world, tbs, key=mca.key),
        world.crls,
    )


def test_expired_and_future_bci_refused(world: World) -> None:
    # Each says which side of its window: a BCI not valid yet points at the clock.
    store = TrustStore(world.root.der)
    ended = refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.update_revocation,
        world.bci,
        world.crls,
        at=later(2),
    )
    assert ended.startswith("the BCI ended at ") and "clock" not in ended, ended
    early = refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.update_revocation,
        world.bci,
        world.crls,
        at=later(-1),
    )
    assert early.startswith("the BCI is not valid before "), early
    assert "this machine's clock is behind its issuer's" in early


def test_missing_crl_refused(world: World) -> None:
    store = TrustStore(world.root.der)
    reason = refused(
        ErrorCode.ERROR_CODE_MISSING_CERTIFICATE,
        store.update_revocation,
        world.bci,
        world.crls[:-1],
    )
    assert "missing" in reason


def test_substituted_crl_refused(world: World) -> None:
    # A CRL with the right issuer and number but other content has another thumbprint.
    store = TrustStore(world.root.der)
    gateway_ca = world.cas[2]
    other = issue_crl(gateway_ca, [], 1)
    refused(
        ErrorCode.ERROR_CODE_MISSING_CERTIFICATE,
        store.update_revocation,
        world.bci,
        (*world.crls[:-1], other),
    )


def test_crl_number_must_match(world: World) -> None:
    store = TrustStore(world.root.der)
    tbs = _tbs(world, 2, _pairs(world))
    tbs.crls[1].crl_number = 7
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.update_revocation,
        _sign(world, tbs),
        world.crls,
    )
    assert "CRL number" in reason


def test_crl_signed_by_the_wrong_ca_refused_at_once_when_known(world: World) -> None:
    cca, mca = world.cas[0], world.cas[1]
    pairs = _pairs(world)
    pairs[2] = (mca.der, world.crls[1])  # the Cardholder CA's CRL, listed for the Merchant CA
    bci = _sign(world, _tbs(world, 2, pairs))
    store = TrustStore(world.root.der)
    store.add_certificates([mca.der])
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, store.update_revocation, bci, world.crls)
    # Unknown CA at update time: the check happens when a chain through it is validated.
    fresh = TrustStore(world.root.der)
    fresh.update_revocation(bci, world.crls)
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        fresh.verify_chain,
        world.merchant_sig,
        [mca.der],
        roles.MERCHANT,
        SIG,
    )
    fresh.verify_chain(world.cardholder, [cca.der], roles.CARDHOLDER, SIG)


def test_ca_missing_from_bci_is_unavailable_revocation(world: World) -> None:
    pairs = [p for p in _pairs(world) if p[0] != world.cas[2].der]
    store = TrustStore(world.root.der)
    store.update_revocation(_sign(world, _tbs(world, 2, pairs)), world.crls)
    with pytest.raises(RevocationUnavailable, match="no CRL for this CA"):
        store.verify_chain(world.gateway_sig, [world.cas[2].der], roles.PAYMENT_GATEWAY, SIG)


def test_rollback_refused(world: World) -> None:
    store = TrustStore(world.root.der)
    newer, crls = world.publish(3)
    store.update_revocation(newer, crls)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, store.update_revocation, world.bci, world.crls
    )
    assert "does not follow" in reason
    same_number, crls2 = world.publish(3, crl_number=9)
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, store.update_revocation, same_number, crls2)


def test_other_brand_refused(world: World) -> None:
    store = TrustStore(world.root.der)
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.update_revocation,
        _sign(world, _tbs(world, 2, _pairs(world), brand_id="otherbrand")),
        world.crls,
    )


def test_not_a_bci_refused(world: World) -> None:
    store = TrustStore(world.root.der)
    signed = crypto_pb2.Signed()
    signed.ParseFromString(world.bci)
    signed.content_type = "setpay.v1.ErrorTBS"
    refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE,
        store.update_revocation,
        signed.SerializeToString(),
        world.crls,
    )
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, store.update_revocation, b"\xff\xff", [])


def test_update_from_bundle(world: World) -> None:
    store = TrustStore(world.root.der)
    assert not store.update_from_bundle(crypto_pb2.CertBundle())
    assert store.update_from_bundle(
        crypto_pb2.CertBundle(brand_crl_identifier=world.bci, crls=world.crls)
    )
    newer, crls = world.publish(4)
    assert store.update_from_bundle(crypto_pb2.CertBundle(brand_crl_identifier=newer, crls=crls))
    # A peer with an older BCI is no error: ours stays.
    assert not store.update_from_bundle(
        crypto_pb2.CertBundle(brand_crl_identifier=world.bci, crls=world.crls)
    )
    snapshot = store.revocation
    assert snapshot is not None and snapshot.sequence_num == 4
    # A newer one that does not verify is an error.
    broken = bytearray(world.publish(5)[0])
    broken[-5] ^= 0x01  # inside the root's signature value
    with pytest.raises(ProtocolError) as exc:
        store.update_from_bundle(crypto_pb2.CertBundle(brand_crl_identifier=bytes(broken)))
    assert exc.value.code == ErrorCode.ERROR_CODE_SIGNATURE_FAILURE


def _merchant_ca_crl(
    world: World,
    extension: object | None = None,
    entry_extension: object | None = None,
) -> bytes:
    """A CRL of the Merchant CA, signed by it, with one critical (entry) extension added."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from setcore.pki.backend_key import CERTIFICATE_PSS, BackendRSAKey, backend_private_key

    mca = world.brand.merchant_ca.ca
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(mca.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .add_extension(x509.CRLNumber(7), critical=False)
    )
    if isinstance(extension, x509.ExtensionType):
        builder = builder.add_extension(extension, critical=True)
    entry = x509.RevokedCertificateBuilder().serial_number(12345).revocation_date(now)
    if isinstance(entry_extension, x509.ExtensionType):
        entry = entry.add_extension(entry_extension, critical=True)
    builder = builder.add_revoked_certificate(entry.build())
    private = backend_private_key(mca.backend, mca.key)
    if isinstance(private, BackendRSAKey):
        crl = builder.sign(private, hashes.SHA256(), rsa_padding=CERTIFICATE_PSS)
    else:
        crl = builder.sign(private, hashes.SHA256())
    return crl.public_bytes(Encoding.DER)


def _critical_crl_extensions() -> dict[str, tuple[object | None, object | None]]:
    from cryptography import x509

    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00")
    issuer = x509.CertificateIssuer([x509.DNSName("another-ca.example")])
    return {
        # A delta CRL lists only what changed since a base CRL: taken for the whole
        # list, it would let every revocation of the base through.
        "delta-crl": (x509.DeltaCRLIndicator(6), None),
        "unknown": (unknown, None),
        # An indirect CRL entry names a certificate of another CA.
        "entry-certificate-issuer": (None, issuer),
        "entry-unknown": (None, unknown),
    }


@pytest.mark.parametrize("case", sorted(_critical_crl_extensions()))
def test_a_crl_with_a_critical_extension_setpay_does_not_process_is_refused(
    world: World, case: str
) -> None:
    from setcore.pki import issue_brand_crl_identifier

    extension, entry_extension = _critical_crl_extensions()[case]
    crl = _merchant_ca_crl(world, extension, entry_extension)
    pairs = [
        (ca, c) if ca != world.brand.merchant_ca.ca.der else (ca, crl) for ca, c in _pairs(world)
    ]
    crls = [c for _, c in pairs]
    store = TrustStore(world.root.der)
    refused(
        ErrorCode.ERROR_CODE_UNRECOGNIZED_EXTENSION,
        store.update_revocation,
        _sign(world, _tbs(world, 2, pairs)),
        crls,
    )
    assert store.revocation is None
    # The brand refuses to list it in the first place.
    refused(
        ErrorCode.ERROR_CODE_UNRECOGNIZED_EXTENSION,
        issue_brand_crl_identifier,
        world.root,
        2,
        pairs,
    )
    # The same CRL without the critical extension is fine.
    plain = _merchant_ca_crl(world)
    pairs = [(ca, c) if c != crl else (ca, plain) for ca, c in pairs]
    store.update_revocation(_sign(world, _tbs(world, 2, pairs)), [c for _, c in pairs])


def test_a_bci_from_a_brand_clock_a_little_ahead_is_accepted(world: World) -> None:
    # Hosts agree on the time only to within a few seconds: a BCI fetched the moment it
    # is published must install on a verifier whose clock runs slightly behind, as a
    # certificate issued a moment ago does (both are backdated by the same skew).
    from setcore.pki.issuance import CLOCK_SKEW

    from .conftest import mca_bundle

    issued = datetime.now(UTC) + timedelta(seconds=30)
    bci, crls = world.publish(2, at=issued)
    store = TrustStore(world.root.der)
    assert store.update_revocation(bci, crls)
    store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)
    # Further behind than the certificates tolerate is still too early.
    too_early = issued - CLOCK_SKEW - timedelta(seconds=1)
    refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        TrustStore(world.root.der).update_revocation,
        bci,
        crls,
        at=too_early,
    )
