"""Revocation through a CA certificate's twin: refused as revoked, else refused as a twin.

Anyone can make a CA certificate's twin, (r, n - s) for its ECDSA signature: the same
name, key and serial, another thumbprint (``setcore.pki.chain``). The BCI names each CA's
CRL by the CA certificate's thumbprint, and the twin's was looked up as a CA the BCI
omits: where revocation is not required (``judge_chain`` always, a store built with
``require_revocation=False``), the link was judged without revocation and a certificate
the CA had revoked was accepted through the twin; where it is required, the path was
refused as one with no CRL, not as revoked. Now the twin is judged with the CRL the BCI
lists for the certificate, and its path refused once a BCI is loaded, in every mode: as
revoked when a certificate on it is, else as the twin's.
"""

from __future__ import annotations

import pytest
from cryptography import x509

from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki import RevocationUnavailable, TrustStore, issue_ca_certificate, roles
from setcore.pki.certificate import common_name_of, load_certificate
from setcore.pki.presented import Presented, verify_presented
from tests.setcore.high_s import certificate_twin
from tests.setcore.refusals import refused

from .conftest import SIG, World, later

# Whether the store requires current revocation data.
REQUIRED = (True, False)


def _twin_ca(world: World) -> bytes:
    """The Merchant CA certificate's twin, as anyone can make it from the certificate."""
    real = world.brand.merchant_ca.ca
    twin = certificate_twin(real.der)
    assert twin != real.der
    assert load_certificate(twin).tbs_certificate_bytes == real.certificate.tbs_certificate_bytes
    return twin


def _merchant_serial(world: World) -> int:
    return x509.load_der_x509_certificate(world.merchant_sig).serial_number


def _store(world: World, required: bool, revoked: list[int]) -> TrustStore:
    """A store pinned to the root, holding a current BCI whose Merchant CA CRL lists
    ``revoked``; it knows no CA certificate, as a peer meeting the twin first."""
    bci, crls = world.publish(2, {world.brand.merchant_ca.ca.thumbprint: revoked})
    store = TrustStore(world.root.der, require_revocation=required)
    store.update_revocation(bci, crls)
    return store


@pytest.mark.parametrize("required", REQUIRED)
def test_a_revoked_leaf_is_refused_as_revoked_through_the_twin(
    ec_world: World, required: bool
) -> None:
    store = _store(ec_world, required, [_merchant_serial(ec_world)])
    for judge in (store.verify_chain, store.judge_chain):
        reason = refused(
            ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
            judge, ec_world.merchant_sig, [_twin_ca(ec_world)], roles.MERCHANT, SIG,
        )  # fmt: skip
        assert "m-0001" in reason and "revoked" in reason


@pytest.mark.parametrize("required", REQUIRED)
def test_a_live_leaf_through_the_twin_is_refused_as_the_twins(
    ec_world: World, required: bool
) -> None:
    # Another serial revoked: the CRL is in play, it does not list this one. Through the
    # certificate the chain is accepted; through the twin it is refused, saying why.
    store = _store(ec_world, required, [_merchant_serial(ec_world) + 1])
    real = ec_world.brand.merchant_ca.ca
    for judge in (store.judge_chain, store.verify_chain):
        reason = refused(
            ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
            judge, ec_world.merchant_sig, [_twin_ca(ec_world)], roles.MERCHANT, SIG,
        )  # fmt: skip
        assert "lists no CRL for this CA certificate" in reason and "twin" in reason
        verified = judge(ec_world.merchant_sig, [real.der], roles.MERCHANT, SIG)
        assert verified.chain_thumbs[1] == real.thumbprint


def test_the_twin_is_not_refused_as_unavailable_revocation(ec_world: World) -> None:
    # Fetching revocation data again cannot help: the refusal is no RevocationUnavailable,
    # which callers answer by fetching it and trying again.
    store = _store(ec_world, True, [])
    with pytest.raises(ProtocolError) as caught:
        store.verify_chain(ec_world.merchant_sig, [_twin_ca(ec_world)], roles.MERCHANT, SIG)
    assert not isinstance(caught.value, RevocationUnavailable)


def test_without_a_bci_a_relaxed_store_judges_the_twin_without_revocation(
    ec_world: World,
) -> None:
    # Refused "once a BCI is loaded": with none, nothing tells the twin from the
    # certificate, and a store not requiring revocation judges both without it.
    store = TrustStore(ec_world.root.der, require_revocation=False)
    twin = _twin_ca(ec_world)
    verified = store.verify_chain(ec_world.merchant_sig, [twin], roles.MERCHANT, SIG)
    assert verified.chain_thumbs[1] == thumbprint(twin)


def test_a_twin_in_the_bundle_does_not_hide_the_real_certificate_known(
    ec_world: World,
) -> None:
    # The bundle's twin is tried first and refused; the real certificate the store
    # knows is tried alone next (``TrustStore._issuer_choices``) and accepted.
    store = _store(ec_world, True, [])
    real = ec_world.brand.merchant_ca.ca
    store.add_certificates([real.der])
    verified = store.verify_chain(ec_world.merchant_sig, [_twin_ca(ec_world)], roles.MERCHANT, SIG)
    assert verified.chain_thumbs[1] == real.thumbprint


def test_a_revoked_leaf_through_the_twin_is_refused_at_start(ec_world: World) -> None:
    # A merchant presenting its certificate with the twin as its chain: the judgement at
    # start (judge_chain, revocation not required) refuses it as a peer does.
    store = _store(ec_world, True, [_merchant_serial(ec_world)])
    presented = Presented(
        "merchant-sig.der", ec_world.merchant_sig, (_twin_ca(ec_world),), roles.MERCHANT, SIG
    )
    refused(ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, verify_presented, store, presented)


def test_stale_data_still_refuses_a_leaf_it_lists_through_the_twin(ec_world: World) -> None:
    # A BCI past its window, held by a store that does not require current data: what it
    # lists as revoked stays refused, through the twin as through the certificate.
    issued = later(-3)
    bci, crls = ec_world.publish(
        2, {ec_world.brand.merchant_ca.ca.thumbprint: [_merchant_serial(ec_world)]}, at=issued
    )
    store = TrustStore(ec_world.root.der, require_revocation=False)
    store.update_revocation(bci, crls, issued)
    assert store.revocation is not None and not store.revocation.covers(later(0))
    refused(
        ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
        store.verify_chain, ec_world.merchant_sig, [_twin_ca(ec_world)], roles.MERCHANT, SIG,
    )  # fmt: skip


# -- RevocationSnapshot.status_for ---------------------------------------------------


def test_the_twin_gets_the_crl_the_bci_lists_for_the_certificate(ec_world: World) -> None:
    snapshot = _store(ec_world, True, []).revocation
    assert snapshot is not None
    real = ec_world.brand.merchant_ca.ca
    twin = _twin_ca(ec_world)
    assert thumbprint(twin) not in snapshot.by_issuer
    status = snapshot.status_for(load_certificate(twin), thumbprint(twin))
    assert status is snapshot.status_for(real.certificate, real.thumbprint)
    # What path validation tells the twin by: the CRL is listed for another thumbprint.
    assert status.issuer_thumb == real.thumbprint != thumbprint(twin)
    # The twin's twin is the certificate, byte for byte: what status_for looks up.
    assert certificate_twin(twin) == real.der


def test_a_look_alike_is_not_taken_for_the_certificate(ec_world: World) -> None:
    # Same name and key, another serial: a CA certificate of its own, which the BCI
    # omits. Only the exact twin shares the certificate's CRL.
    snapshot = _store(ec_world, True, []).revocation
    assert snapshot is not None
    real = ec_world.brand.merchant_ca.ca
    look_alike = issue_ca_certificate(
        ec_world.root, real.key.public_key, roles.MERCHANT_CA,
        common_name=common_name_of(real.certificate),
    )  # fmt: skip
    cert = load_certificate(look_alike)
    assert cert.subject == real.certificate.subject
    with pytest.raises(RevocationUnavailable, match="lists no CRL"):
        snapshot.status_for(cert, thumbprint(look_alike))
    twin = certificate_twin(look_alike)
    with pytest.raises(RevocationUnavailable, match="lists no CRL"):
        snapshot.status_for(load_certificate(twin), thumbprint(twin))


def test_a_certificate_the_bci_does_not_name_nor_its_twin_is_omitted(ec_world: World) -> None:
    # A merchant's certificate is no CA: neither it nor its twin is in the BCI.
    snapshot = _store(ec_world, True, []).revocation
    assert snapshot is not None
    leaf = load_certificate(ec_world.merchant_sig)
    with pytest.raises(RevocationUnavailable, match="lists no CRL"):
        snapshot.status_for(leaf, thumbprint(ec_world.merchant_sig))


def test_the_twin_of_a_revoked_ca_certificate_is_refused(ec_world: World) -> None:
    # The CA certificate revoked by the root: its twin, same serial, is refused as
    # revoked in both modes, not as a twin (that refusal waits for every link's check),
    # though the link below it, the live leaf, is checked first.
    serial = ec_world.brand.merchant_ca.ca.certificate.serial_number
    bci, crls = ec_world.publish(2, {ec_world.root.thumbprint: [serial]})
    for required in REQUIRED:
        store = TrustStore(ec_world.root.der, require_revocation=required)
        store.update_revocation(bci, crls)
        refused(
            ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
            store.verify_chain, ec_world.merchant_sig, [_twin_ca(ec_world)], roles.MERCHANT, SIG,
        )  # fmt: skip
