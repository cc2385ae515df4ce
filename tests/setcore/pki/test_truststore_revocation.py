"""Revocation in chain validation: revoked leaves and CAs, missing or stale CRL data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509

from setcore.errors import ErrorCode
from setcore.pki import RevocationUnavailable, TrustStore, roles

from .conftest import KEX, SIG, World, cca_bundle, later, mca_bundle, pca_bundle, refused

# -- revocation -----------------------------------------------------------------------------


def test_revoked_leaf_refused(world: World) -> None:
    store = TrustStore(world.root.der)
    serial = x509.load_der_x509_certificate(world.cardholder).serial_number
    bci, crls = world.publish(2, {world.brand.cardholder_ca.ca.thumbprint: [serial]})
    store.update_revocation(bci, crls)
    refused(
        ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
        store.verify_chain,
        world.cardholder,
        cca_bundle(world),
        roles.CARDHOLDER,
        SIG,
    )
    store.verify_chain(world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY, SIG)


def test_revoked_ca_refuses_its_whole_subtree(world: World) -> None:
    store = TrustStore(world.root.der)
    serial = world.brand.gateway_ca.ca.certificate.serial_number
    bci, crls = world.publish(2, {world.root.thumbprint: [serial]})
    store.update_revocation(bci, crls)
    for leaf, usage in ((world.gateway_sig, SIG), (world.gateway_kex, KEX)):
        refused(
            ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
            store.verify_chain,
            leaf,
            pca_bundle(world),
            roles.PAYMENT_GATEWAY,
            usage,
        )
    store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)


def test_no_revocation_data_where_required(world: World) -> None:
    store = TrustStore(world.root.der)
    with pytest.raises(RevocationUnavailable, match="no BrandCRLIdentifier") as caught:
        store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)
    assert caught.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
    relaxed = TrustStore(world.root.der, require_revocation=False)
    relaxed.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)


def test_stale_revocation_data_refused(world: World, store: TrustStore) -> None:
    with pytest.raises(RevocationUnavailable, match="not current"):
        store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG, at=later(2))


def test_a_past_instant_is_judged_with_a_bci_issued_since(world: World) -> None:
    # A decision's answer rebuilt later is checked as of the decision, while the BCI in
    # force was issued after it: that BCI lists every revocation up to its issue.
    issued = later(0.01)
    serial = x509.load_der_x509_certificate(world.cardholder).serial_number
    bci, crls = world.publish(2, {world.brand.cardholder_ca.ca.thumbprint: [serial]}, at=issued)
    for relaxed in (False, True):
        store = TrustStore(world.root.der, require_revocation=not relaxed)
        store.update_revocation(bci, crls, issued)
        before = issued - timedelta(minutes=1)
        store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG, at=before)
        # Revocation is current state: revoked since that instant is still refused.
        refused(
            ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
            store.verify_chain,
            world.cardholder,
            cca_bundle(world),
            roles.CARDHOLDER,
            SIG,
            before,
        )


def test_crl_past_next_update_is_unavailable_revocation(world: World) -> None:
    from setcore.pki import issue_brand_crl_identifier, issue_crl

    pairs = [
        (ca.der, issue_crl(ca, [], 3, lifetime=timedelta(hours=1)))
        for ca in (world.root, *world.cas)
    ]
    store = TrustStore(world.root.der)
    store.update_revocation(issue_brand_crl_identifier(world.root, 2, pairs), [c for _, c in pairs])
    store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)
    with pytest.raises(RevocationUnavailable, match="nextUpdate"):
        store.verify_chain(
            world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG, at=later(0.1)
        )


def test_a_relaxed_store_judges_past_a_crls_next_update_with_what_it_lists(
    world: World,
) -> None:
    # Within the BCI's window, a CRL past its nextUpdate is stale data as a BCI past its
    # window is: a store not requiring revocation judges with it, a serial it lists stays
    # refused, and the answer holds for that instant alone (not cached).
    from setcore.pki import RevokedCertificate, issue_brand_crl_identifier, issue_crl

    serial = x509.load_der_x509_certificate(world.merchant_sig).serial_number
    revoked = {world.brand.merchant_ca.ca.thumbprint: [RevokedCertificate(serial, later(0))]}
    pairs = [
        (ca.der, issue_crl(ca, revoked.get(ca.thumbprint, []), 3, lifetime=timedelta(hours=1)))
        for ca in (world.root, *world.cas)
    ]
    bci = issue_brand_crl_identifier(world.root, 2, pairs)
    store = TrustStore(world.root.der, require_revocation=False)
    store.update_revocation(bci, [c for _, c in pairs])
    stale = later(0.1)
    assert store.revocation is not None and store.revocation.covers(stale)
    for _ in range(2):
        store.verify_chain(world.merchant_kex, mca_bundle(world), roles.MERCHANT, KEX, stale)
    assert (store.counters.verifications, store.counters.cache_hits) == (2, 0)
    refused(
        ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
        store.verify_chain,
        world.merchant_sig,
        mca_bundle(world),
        roles.MERCHANT,
        SIG,
        stale,
    )
    strict = TrustStore(world.root.der)
    strict.update_revocation(bci, [c for _, c in pairs])
    with pytest.raises(RevocationUnavailable, match="nextUpdate"):
        strict.verify_chain(world.merchant_kex, mca_bundle(world), roles.MERCHANT, KEX, stale)


def test_a_relaxed_store_judges_a_ca_the_bci_omits_without_revocation(world: World) -> None:
    # A strict store refuses a chain whose CA's CRL the BCI omits; a relaxed one judges
    # that link without revocation, answers for that instant alone (not cached).
    from setcore.pki import issue_brand_crl_identifier, issue_crl

    mca = world.brand.merchant_ca.ca
    pairs = [(ca.der, issue_crl(ca, [], 3)) for ca in (world.root, *world.cas) if ca is not mca]
    bci, crls = issue_brand_crl_identifier(world.root, 2, pairs), [c for _, c in pairs]
    strict, relaxed = (
        TrustStore(world.root.der),
        TrustStore(world.root.der, require_revocation=False),
    )
    for store in (strict, relaxed):
        store.update_revocation(bci, crls)
    with pytest.raises(RevocationUnavailable, match="lists no CRL"):
        strict.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)
    for _ in range(2):
        relaxed.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)
    assert (relaxed.counters.verifications, relaxed.counters.cache_hits) == (2, 0)


def test_a_relaxed_store_refuses_what_a_stale_bci_revokes(world: World) -> None:
    # Not requiring revocation data means tolerating its absence or age, not ignoring a
    # revocation it already holds: a revoked certificate stays revoked.
    serial = x509.load_der_x509_certificate(world.merchant_sig).serial_number
    bci, crls = world.publish(2, {world.brand.merchant_ca.ca.thumbprint: [serial]})
    store = TrustStore(world.root.der, require_revocation=False)
    store.update_revocation(bci, crls)
    for at in (later(2), None, later(2)):
        refused(
            ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
            store.verify_chain,
            world.merchant_sig,
            mca_bundle(world),
            roles.MERCHANT,
            SIG,
            at,
        )
    store.verify_chain(world.merchant_kex, mca_bundle(world), roles.MERCHANT, KEX, at=later(2))


def test_a_chain_checked_beyond_the_bci_window_is_not_cached(world: World) -> None:
    # Beyond the BCI's window a relaxed store checks what it holds without the CRLs'
    # nextUpdate bounds; that answer is good for that instant only.
    store = world.store(require_revocation=False)
    for _ in range(2):
        store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG, later(2))
    assert store.counters.cache_hits == 0
    store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)
    store.verify_chain(world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG)
    assert store.counters.cache_hits == 1
