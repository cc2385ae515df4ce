"""A renewal CertReq whose bundle is junk: refused, and the CA's trust store holds no more
than before. The renewed certificate's chain is resolved from the requester's bundle
before the session, Chall-CA or ca.db are looked at, so anyone who reaches the CA port
could otherwise make each CA process keep up to MAX_BUNDLE_CERTIFICATES certificates of
nearly 16 KB per request, for good."""

from __future__ import annotations

import pytest

from hsm.base import KeyUsage
from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, PeerError
from setcore.pki.truststore import MAX_BUNDLE_CERTIFICATES
from setcore.registration_cardholder import open_card_cert_response
from tests.setcore.pki.junk import junk_certificate

from .conftest import CARD, EXPIRY, Bank
from .flows import (
    CARD_RENEWAL,
    MER_RENEWAL,
    REQUESTERS,
    card_request,
    new_key,
    register_cardholder,
    register_merchant,
    start_cardholder,
    start_merchant,
)
from .test_merchant import _merchant


def _junk_credentials(bank: Bank) -> tuple[Credentials, list[bytes]]:
    """A requester's "certificate" to renew and its "chain": junk, with a real key."""
    junk = [junk_certificate() for _ in range(MAX_BUNDLE_CERTIFICATES)]
    key = new_key(bank, KeyUsage.SIGNATURE)
    return Credentials(REQUESTERS, key, junk[0], tuple(junk[1:])), junk


def _kept(bank: Bank, ders: list[bytes]) -> list[int]:
    trust = bank.pki.trust
    return [i for i, der in enumerate(ders) if trust.certificate(thumbprint(der)) is not None]


def test_a_cardholder_renewal_with_a_junk_bundle_leaves_nothing(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL)
    renewing, junk = _junk_credentials(ec_bank)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, key, CARD, EXPIRY, renewing=renewing)
    with pytest.raises(PeerError) as refused:
        open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert refused.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
    assert _kept(ec_bank, junk) == []
    # A real certificate renewed: its path validated, and it is kept.
    first, _, first_key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert first.certificate is not None
    renewed, *_ = register_cardholder(
        ec_bank, CARD, EXPIRY,
        session=start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL),
        renewing=first.credentials(REQUESTERS, first_key),
    )  # fmt: skip
    assert renewed.complete
    assert _kept(ec_bank, [first.certificate.der]) == [0]


def test_a_merchant_renewal_with_a_junk_bundle_leaves_nothing(ec_bank: Bank) -> None:
    identity = _merchant("junk-renewal")
    session = start_merchant(ec_bank, identity, request_type=MER_RENEWAL)
    renewing, junk = _junk_credentials(ec_bank)
    with pytest.raises(PeerError) as refused:
        register_merchant(ec_bank, identity, session=session, renewing=renewing)
    assert refused.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
    assert _kept(ec_bank, junk) == []
