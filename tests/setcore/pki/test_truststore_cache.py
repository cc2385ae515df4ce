"""TrustStore.resolve and its caches: reuse without reverifying, invalidation, bounds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from cryptography import x509

from setcore.errors import ErrorCode
from setcore.pki import TrustStore, roles
from setcore.pki.verified import VerifiedCertificate
from setpay.v1 import crypto_pb2

from .conftest import KEX, SIG, World, cca_bundle, mca_bundle, pca_bundle, refused

# -- resolve and the cache ------------------------------------------------------------------


def test_resolve_finds_the_signer_in_the_bundle(world: World, store: TrustStore) -> None:
    from setcore.encoding import thumbprint

    bundle = crypto_pb2.CertBundle(certificates=[world.gateway_sig, *pca_bundle(world)])
    verified = store.resolve(thumbprint(world.gateway_sig), bundle, roles.PAYMENT_GATEWAY, SIG)
    assert verified.der == world.gateway_sig


def test_resolve_missing_certificate(world: World, store: TrustStore) -> None:
    bundle = crypto_pb2.CertBundle(certificates=pca_bundle(world))
    refused(
        ErrorCode.ERROR_CODE_MISSING_CERTIFICATE,
        store.resolve,
        b"\x00" * 32,
        bundle,
        roles.PAYMENT_GATEWAY,
        SIG,
    )


def test_resolve_uses_locally_known_certificates(world: World) -> None:
    from setcore.encoding import thumbprint

    store = world.store()
    store.add_certificates([world.merchant_kex, *mca_bundle(world)])
    verified = store.resolve(thumbprint(world.merchant_kex), None, roles.MERCHANT, KEX)
    assert verified.der == world.merchant_kex
    assert store.certificate(thumbprint(world.merchant_kex)) == world.merchant_kex


def test_cache_hit_does_not_reverify(world: World) -> None:
    from setcore.encoding import thumbprint

    store = world.store()
    bundle = crypto_pb2.CertBundle(certificates=[world.merchant_sig, *mca_bundle(world)])
    thumb = thumbprint(world.merchant_sig)
    first = store.resolve(thumb, bundle, roles.MERCHANT, SIG)
    assert store.counters.verifications == 1
    for _ in range(5):
        assert store.resolve(thumb, None, roles.MERCHANT, SIG) is first
    store.verify_chain(world.merchant_sig, [], roles.MERCHANT, SIG)
    assert store.counters.verifications == 1
    assert store.counters.cache_hits == 6
    # A cached chain still answers for its role only.
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.resolve,
        thumb,
        None,
        roles.CARDHOLDER,
        SIG,
    )
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, store.resolve, thumb, None, roles.MERCHANT, KEX
    )
    assert store.counters.verifications == 1


def test_revocation_update_invalidates_the_cache(world: World) -> None:
    from setcore.encoding import thumbprint

    store = world.store()
    thumb = thumbprint(world.merchant_sig)
    bundle = crypto_pb2.CertBundle(certificates=[world.merchant_sig, *mca_bundle(world)])
    store.resolve(thumb, bundle, roles.MERCHANT, SIG)
    serial = x509.load_der_x509_certificate(world.merchant_sig).serial_number
    bci, crls = world.publish(2, {world.brand.merchant_ca.ca.thumbprint: [serial]})
    assert store.update_revocation(bci, crls)
    reason = refused(
        ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, store.resolve, thumb, bundle, roles.MERCHANT, SIG
    )
    assert "m-0001" in reason
    assert store.counters.verifications == 2
    # Other certificates are unaffected once re-validated under the new data.
    store.verify_chain(world.merchant_kex, mca_bundle(world), roles.MERCHANT, KEX)


def test_cache_entry_ends_with_the_chain(world: World) -> None:
    store = TrustStore(world.root.der, require_revocation=False)
    store.verify_chain(world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY, SIG)
    end = x509.load_der_x509_certificate(world.gateway_sig).not_valid_after_utc
    refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.verify_chain,
        world.gateway_sig,
        [],
        roles.PAYMENT_GATEWAY,
        SIG,
        at=end + timedelta(seconds=1),
    )


def test_concurrent_resolves(world: World) -> None:
    from setcore.encoding import thumbprint

    store = world.store()
    leaves = [
        (world.merchant_sig, mca_bundle(world), roles.MERCHANT, SIG),
        (world.merchant_kex, mca_bundle(world), roles.MERCHANT, KEX),
        (world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY, SIG),
        (world.cardholder, cca_bundle(world), roles.CARDHOLDER, SIG),
    ]

    def work(index: int) -> VerifiedCertificate:
        leaf, chain, kind, usage = leaves[index % len(leaves)]
        bundle = crypto_pb2.CertBundle(certificates=[leaf, *chain])
        return store.resolve(thumbprint(leaf), bundle, kind, usage)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(200)))
    assert {r.der for r in results} == {leaf for leaf, *_ in leaves}
    counters = store.counters
    assert counters.verifications + counters.cache_hits == 200
    assert counters.verifications < 200


def test_added_certificates_survive_cache_pressure(world: World) -> None:
    from setcore.encoding import thumbprint

    store = world.store(max_cached_certificates=2, max_cached_chains=1)
    store.add_certificates(mca_bundle(world))
    for leaf, chain, kind in (
        (world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY),
        (world.cardholder, cca_bundle(world), roles.CARDHOLDER),
    ):
        store.verify_chain(leaf, chain, kind, SIG)
    bundle = crypto_pb2.CertBundle(certificates=[world.merchant_sig])  # CA left out
    verified = store.resolve(thumbprint(world.merchant_sig), bundle, roles.MERCHANT, SIG)
    assert verified.der == world.merchant_sig
    # Seen-in-bundle certificates were evicted (bound 2), the added CA certificate was not.
    assert store.certificate(thumbprint(world.gateway_sig)) is None
    assert store.certificate(thumbprint(world.brand.merchant_ca.ca.der)) is not None
