"""``verify_presented``: a party's own certificate judged as its peers judge it, and never
refused for want of revocation data alone (the merchant and bank tests cover the rest).

Before, revocation data held but not current was dropped for the judgement: a certificate
it listed as revoked (a BCI past its window, or a CRL past its nextUpdate) was accepted,
which a peer holding the same data refuses. And each judgement counted on the store's
counters and filled its cache."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from setcore.errors import ErrorCode, ProtocolError
from setcore.pki import TrustStore, roles
from setcore.pki.bci import RevocationUnavailable, issue_brand_crl_identifier
from setcore.pki.certificate import load_certificate
from setcore.pki.crl import RevokedCertificate, issue_crl
from setcore.pki.presented import Presented, verify_presented
from setcore.pki.truststore import TrustCounters
from tests.setcore.pki.conftest import SIG, World, later, mca_bundle, pca_bundle


def _gateway(world: World) -> Presented:
    return Presented(
        "gateway-sig.der", world.gateway_sig, tuple(pca_bundle(world)), roles.PAYMENT_GATEWAY, SIG
    )


def test_a_certificate_verifies_without_revocation_data(ec_world: World) -> None:
    bare = TrustStore(ec_world.root.der)  # revocation required, none held
    presented = _gateway(ec_world)
    with pytest.raises(ProtocolError):  # what a peer's store would say: unknown status
        bare.verify_chain(presented.der, presented.chain, roles.PAYMENT_GATEWAY, SIG)
    verify_presented(bare, presented)


def test_without_revocation_data_an_ended_certificate_is_still_refused(ec_world: World) -> None:
    bare = TrustStore(ec_world.root.der)
    with pytest.raises(ProtocolError) as refused:
        verify_presented(bare, _gateway(ec_world), later(400))
    assert refused.value.code == ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE


def test_with_revocation_data_a_revoked_certificate_is_refused(ec_world: World) -> None:
    pca = ec_world.brand.gateway_ca.ca
    serial = _serial(ec_world.gateway_sig)
    store = TrustStore(ec_world.root.der)
    store.update_revocation(*ec_world.publish(2, {pca.thumbprint: [serial]}))
    with pytest.raises(ProtocolError) as refused:
        verify_presented(store, _gateway(ec_world))
    assert refused.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_a_certificate_of_another_role_is_refused(ec_world: World) -> None:
    presented = Presented(
        "merchant-sig v1", ec_world.merchant_sig, tuple(mca_bundle(ec_world)),
        roles.PAYMENT_GATEWAY, SIG,
    )  # fmt: skip
    with pytest.raises(ProtocolError) as refused:
        verify_presented(ec_world.store(), presented)
    assert refused.value.code == ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE


def _serial(der: bytes) -> int:
    return load_certificate(der).serial_number


#: Revocation data that is not current, listing these serials under the Payment Gateway
#: CA: the BCI and CRLs, and the instant it is judged at (None: now).
Stale = Callable[[World, tuple[int, ...]], tuple[bytes, tuple[bytes, ...], datetime | None]]


def _bci_past_its_window(
    world: World, revoked: tuple[int, ...]
) -> tuple[bytes, tuple[bytes, ...], datetime | None]:
    bci, crls = world.publish(2, {world.brand.gateway_ca.ca.thumbprint: revoked})
    return bci, crls, datetime.now(UTC) + timedelta(days=2)  # the BCI lasts a day


def _crl_past_its_next_update(
    world: World, revoked: tuple[int, ...]
) -> tuple[bytes, tuple[bytes, ...], datetime | None]:
    """A current BCI over the CRLs, the Payment Gateway CA's past its nextUpdate."""
    pca = world.brand.gateway_ca.ca
    now = datetime.now(UTC)
    pairs = []
    for ca in (world.root, *world.cas):
        if ca is pca:
            entries = [RevokedCertificate(serial, now - timedelta(hours=3)) for serial in revoked]
            crl = issue_crl(
                ca, entries, 2, at=now - timedelta(hours=2), lifetime=timedelta(hours=1)
            )
        else:
            crl = issue_crl(ca, [], 2)
        pairs.append((ca.der, crl))
    return issue_brand_crl_identifier(world.root, 2, pairs), tuple(c for _, c in pairs), None


STALE = pytest.mark.parametrize(
    "stale", [_bci_past_its_window, _crl_past_its_next_update], ids=["bci-window", "crl-next"]
)


def _holding(
    world: World, stale: Stale, revoked: tuple[int, ...]
) -> tuple[TrustStore, datetime | None]:
    """A store requiring revocation, holding ``stale`` data it cannot judge with."""
    bci, crls, at = stale(world, revoked)
    store = TrustStore(world.root.der)
    store.update_revocation(bci, crls)
    with pytest.raises(RevocationUnavailable):  # what the first, strict judgement meets
        store.verify_chain(world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY, SIG, at)
    return store, at


@STALE
def test_stale_revocation_data_listing_the_certificate_still_refuses_it(
    ec_world: World, stale: Stale
) -> None:
    store, at = _holding(ec_world, stale, (_serial(ec_world.gateway_sig),))
    with pytest.raises(ProtocolError) as refused:
        verify_presented(store, _gateway(ec_world), at)
    assert refused.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


@STALE
def test_stale_revocation_data_not_listing_the_certificate_accepts_it(
    ec_world: World, stale: Stale
) -> None:
    store, at = _holding(ec_world, stale, (_serial(ec_world.merchant_sig),))
    verify_presented(store, _gateway(ec_world), at)


def test_a_bci_that_omits_the_certificates_ca_does_not_refuse_it(ec_world: World) -> None:
    pca = ec_world.brand.gateway_ca.ca
    pairs = [
        (ca.der, issue_crl(ca, [], 2)) for ca in (ec_world.root, *ec_world.cas) if ca is not pca
    ]
    store = TrustStore(ec_world.root.der)
    store.update_revocation(
        issue_brand_crl_identifier(ec_world.root, 2, pairs), [c for _, c in pairs]
    )
    with pytest.raises(RevocationUnavailable):
        store.verify_chain(ec_world.gateway_sig, pca_bundle(ec_world), roles.PAYMENT_GATEWAY, SIG)
    verify_presented(store, _gateway(ec_world))


def test_a_bci_that_omits_one_ca_still_revokes_through_the_others(ec_world: World) -> None:
    # The BCI omits the PCA's CRL, and the root's CRL revokes the PCA itself: only the link
    # the PCA issued goes unjudged, so the revoked PCA still refuses the gateway's chain,
    # as a peer holding the same data would (before, one omission dropped all of it).
    pca = ec_world.brand.gateway_ca.ca
    revoked = [RevokedCertificate(_serial(pca.der), datetime.now(UTC))]
    pairs = [
        (ca.der, issue_crl(ca, revoked if ca is ec_world.root else [], 2))
        for ca in (ec_world.root, *ec_world.cas)
        if ca is not pca
    ]
    store = TrustStore(ec_world.root.der)
    store.update_revocation(
        issue_brand_crl_identifier(ec_world.root, 2, pairs), [c for _, c in pairs]
    )
    with pytest.raises(ProtocolError) as refused:
        verify_presented(store, _gateway(ec_world))
    assert refused.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_the_judgement_leaves_the_store_as_it_was(ec_world: World) -> None:
    store = ec_world.store()  # current revocation data: judged, and would be cached
    verify_presented(store, _gateway(ec_world))
    assert store.counters == TrustCounters(verifications=0, cache_hits=0)
    store.verify_chain(ec_world.gateway_sig, pca_bundle(ec_world), roles.PAYMENT_GATEWAY, SIG)
    assert store.counters == TrustCounters(verifications=1, cache_hits=0)  # nothing cached


def test_a_presented_chain_of_too_many_certificates_is_refused(ec_world: World) -> None:
    presented = _gateway(ec_world)
    bloated = Presented(presented.name, presented.der, presented.chain * 17,
                        presented.certificate_type, presented.usage)  # fmt: skip
    with pytest.raises(ProtocolError) as refused:
        verify_presented(ec_world.store(), bloated)
    assert refused.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
