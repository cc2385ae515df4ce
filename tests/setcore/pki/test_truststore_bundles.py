"""What a bundle leaves in the TrustStore: the certificates of a path that validated, and
nothing of a refused one. Whoever reaches a port that resolves bundles must not be able to
fill the process's memory with certificates no brand CA issued."""

from __future__ import annotations

from setcore.encoding import thumbprint
from setcore.errors import ErrorCode
from setcore.pki import TrustStore, roles
from setcore.pki.truststore import MAX_BUNDLE_CERTIFICATES
from setpay.v1 import crypto_pb2

from .conftest import KEX, SIG, World, mca_bundle, refused
from .junk import junk_certificate


def _kept(store: TrustStore, ders: list[bytes]) -> list[int]:
    """The positions in ``ders`` of the certificates the store now knows by thumbprint."""
    return [i for i, der in enumerate(ders) if store.certificate(thumbprint(der)) is not None]


def test_a_refused_bundle_of_junk_leaves_nothing(ec_world: World) -> None:
    store = ec_world.store()
    junk = [junk_certificate() for _ in range(MAX_BUNDLE_CERTIFICATES)]
    bundle = crypto_pb2.CertBundle(certificates=junk)
    # The signature names the first junk certificate: parsed, its path refused.
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.resolve, thumbprint(junk[0]), bundle, roles.MERCHANT, SIG,
    )  # fmt: skip
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain, junk[1], junk[2:], roles.MERCHANT, SIG,
    )  # fmt: skip
    assert _kept(store, junk) == []
    # Named again without its bundle, the leaf is not found: it was never kept.
    refused(
        ErrorCode.ERROR_CODE_MISSING_CERTIFICATE,
        store.resolve, thumbprint(junk[0]), None, roles.MERCHANT, SIG,
    )  # fmt: skip


def test_a_refused_valid_chain_keeps_nothing(ec_world: World) -> None:
    # A merchant's certificate where a cardholder's is required: its path was built and
    # refused; neither the leaf nor its CA certificate is kept for that.
    store = ec_world.store()
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain, ec_world.merchant_sig, mca_bundle(ec_world), roles.CARDHOLDER, SIG,
    )  # fmt: skip
    assert _kept(store, [ec_world.merchant_sig, *mca_bundle(ec_world)]) == []


def test_a_validated_path_is_kept_and_the_bundle_s_extras_are_not(ec_world: World) -> None:
    store = ec_world.store()
    junk = [junk_certificate() for _ in range(3)]
    leaf, ca = ec_world.merchant_sig, ec_world.brand.merchant_ca.ca.der
    bundle = crypto_pb2.CertBundle(certificates=[*junk, leaf, ca, ec_world.merchant_kex])
    verified = store.resolve(thumbprint(leaf), bundle, roles.MERCHANT, SIG)
    assert verified.der == leaf
    assert _kept(store, [leaf, ca]) == [0, 1]
    # Carried along but not resolved: not kept either, until its own path validates.
    assert _kept(store, [*junk, ec_world.merchant_kex]) == []
    # A later message may leave the CA certificate out: it was kept with the path.
    store.verify_chain(ec_world.merchant_kex, [], roles.MERCHANT, KEX)
    assert _kept(store, [ec_world.merchant_kex]) == [0]


def test_the_cache_of_verified_chains_still_answers(ec_world: World) -> None:
    # The hot path: a signer named again is one cache lookup, no validation.
    store = ec_world.store()
    leaf = ec_world.merchant_sig
    bundle = crypto_pb2.CertBundle(certificates=[leaf, *mca_bundle(ec_world)])
    first = store.resolve(thumbprint(leaf), bundle, roles.MERCHANT, SIG)
    for _ in range(3):
        assert store.resolve(thumbprint(leaf), None, roles.MERCHANT, SIG) is first
    assert (store.counters.verifications, store.counters.cache_hits) == (1, 3)
