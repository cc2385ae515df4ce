"""``verify_presented``: a party's own certificate judged as its peers judge it, and never
refused for want of revocation data alone (the merchant and bank tests cover the rest)."""

from __future__ import annotations

import pytest

from setcore.errors import ErrorCode, ProtocolError
from setcore.pki import TrustStore, roles
from setcore.pki.certificate import load_certificate
from setcore.pki.presented import Presented, verify_presented
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
