"""Chains whose CA certificate has a look-alike: same subject and key, another serial.

A CA certificate re-issued with the same key (a new serial and validity) signs what the
CA issued as well as the certificate the BCI lists. A trust store that met such a
look-alike in a bundle first, and was given the real certificate later, used to build
every chain of that CA through the look-alike, fail there, and refuse a valid chain.
Real certificates, issued by the brand's root with the CA's own key.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from setcore.errors import ErrorCode
from setcore.pki import TrustStore, issue_ca_certificate, roles
from setcore.pki import chain as pki_chain
from setcore.pki import truststore as pki_truststore
from setcore.pki.certificate import common_name_of, load_certificate
from setcore.pki.chain import MAX_ISSUER_CANDIDATES

from .conftest import SIG, World, refused


def _look_alike(world: World) -> bytes:
    """The Merchant CA's certificate issued again: same key and subject, another serial;
    one the BCI does not list, so a chain through it is refused."""
    real = world.brand.merchant_ca.ca
    twin = issue_ca_certificate(
        world.root, real.key.public_key, roles.MERCHANT_CA,
        common_name=common_name_of(real.certificate),
    )  # fmt: skip
    assert load_certificate(twin).subject == real.certificate.subject
    assert load_certificate(twin).serial_number != real.certificate.serial_number
    return twin


def _remember(store: TrustStore, world: World, bundle: list[bytes]) -> None:
    """A merchant's message arrives with ``bundle``; its chain is refused."""
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain, world.merchant_sig, bundle, roles.MERCHANT, SIG,
    )  # fmt: skip


def test_a_look_alike_met_first_does_not_hide_the_real_ca_certificate(ec_world: World) -> None:
    store = ec_world.store()
    _remember(store, ec_world, [_look_alike(ec_world)])
    real = ec_world.brand.merchant_ca.ca
    store.add_certificates([real.der])

    verified = store.verify_chain(ec_world.merchant_sig, [], roles.MERCHANT, SIG)
    assert verified.chain_thumbs[1] == real.thumbprint


def test_a_look_alike_in_the_bundle_does_not_hide_the_real_one_known(ec_world: World) -> None:
    store = ec_world.store()
    real = ec_world.brand.merchant_ca.ca
    store.add_certificates([real.der])

    verified = store.verify_chain(
        ec_world.merchant_sig, [_look_alike(ec_world)], roles.MERCHANT, SIG
    )
    assert verified.chain_thumbs[1] == real.thumbprint


def test_only_look_alikes_are_still_refused(ec_world: World) -> None:
    store = ec_world.store()
    _remember(store, ec_world, [_look_alike(ec_world), _look_alike(ec_world)])


def _counted_validations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gains an item for each chain validation the trust store makes."""
    validations: list[int] = []
    validate: Callable[..., object] = pki_chain.validate

    def counted(*args: object, **kwargs: object) -> object:
        validations.append(1)
        return validate(*args, **kwargs)

    monkeypatch.setattr(pki_truststore, "validate", counted)
    return validations


def test_the_candidates_tried_are_bounded(ec_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bundle stuffed with look-alikes costs a bounded number of validations: the
    # first, then one per candidate up to MAX_ISSUER_CANDIDATES; the real certificate
    # behind them all is not reached.
    store = ec_world.store()
    store.add_certificates([ec_world.brand.merchant_ca.ca.der])
    validations = _counted_validations(monkeypatch)
    bundle = [_look_alike(ec_world) for _ in range(pki_truststore.MAX_BUNDLE_CERTIFICATES)]
    _remember(store, ec_world, bundle)
    assert len(validations) == 1 + MAX_ISSUER_CANDIDATES


def test_a_refused_chain_without_look_alikes_is_validated_once(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The retry is for look-alikes only: with one candidate issuer the first try was the
    # only one, and a chain refused for itself (here a merchant's certificate where a
    # cardholder's is required) must not cost a second validation.
    store = ec_world.store()
    store.add_certificates([ec_world.brand.merchant_ca.ca.der])
    validations = _counted_validations(monkeypatch)
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain, ec_world.merchant_sig, [], roles.CARDHOLDER, SIG,
    )  # fmt: skip
    assert len(validations) == 1
