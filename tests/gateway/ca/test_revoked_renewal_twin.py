"""A renewal signed through the twin of the certificate it renews.

Anyone can make a certificate's twin, (r, n - s) for its ECDSA signature: other DER and
thumbprint, the same key, names and serial, verified as the certificate is
(``setcore.pki.chain``). So the twin is the same certificate, and the CA answers a renewal
through it as it answers one through the certificate: refused when ca.db holds the
certificate revoked at the decision (the revocation is found by issuer and serial, not by
the thumbprint the requester chose), renewed when it is live.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.ca import CaStore
from gateway.ca import cardholder as ca_cardholder
from gateway.ca import merchant as ca_merchant
from gateway.ca.records import IssuedCertificate
from hsm.base import KeyUsage
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import new_id
from setcore.pki.roles import MERCHANT
from setcore.registration import key_thumbprint, spki_of
from setcore.registration_cardholder import open_card_cert_response
from setcore.registration_merchant import MerchantIdentity
from tests.setcore.high_s import certificate_twin

from .conftest import CARD, EXPIRY, Bank
from .flows import (
    CARD_RENEWAL,
    MER_RENEWAL,
    REQUESTERS,
    card_request,
    certificates_naming,
    new_key,
    register_cardholder,
    register_merchant,
    start_cardholder,
    start_merchant,
)
from .test_revocation import _reading, _revoke_elsewhere, _revoked_after_verifying

# How the renewed certificate is presented: as the CA issued it, or as its twin.
PRESENTED = ("certificate", "twin")


def _presenting(credentials: Credentials, presented: str) -> Credentials:
    """The holder's credentials, its signature certificate replaced by the twin if asked."""
    if presented == "certificate":
        return credentials
    twin = certificate_twin(credentials.signature_cert)
    assert twin != credentials.signature_cert
    return replace(credentials, signature_cert=twin)


def _merchant(tag: str) -> MerchantIdentity:
    return MerchantIdentity(f"m-twin-{tag}-{new_id().hex()[:8]}", "Twin Ltd")


@pytest.mark.parametrize("presented", PRESENTED)
def test_a_merchant_renewal_through_a_revoked_certificate_is_refused_whichever_twin(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    """The operator revoked a merchant's certificates to free its ID; the old holder's
    renewal, decided before the trust store learns of it, is refused whether it presents
    the certificate or its twin (another thumbprint, the revoked key all the same)."""
    identity = _merchant("merchant")
    first, state, _ = register_merchant(ec_bank, identity)
    assert first.signature is not None and first.key_exchange is not None
    old = _presenting(first.credentials(REQUESTERS, state), presented)
    held = certificates_naming(ec_bank, identity.merchant_id)
    session = start_merchant(ec_bank, identity, request_type=MER_RENEWAL)
    revoked = (first.signature.thumbprint, first.key_exchange.thumbprint)
    _revoked_after_verifying(
        monkeypatch, ca_merchant, "verify_merchant_cert_request",
        lambda: _revoke_elsewhere(ec_bank, revoked),
    )  # fmt: skip
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    with pytest.raises(PeerError) as caught:
        register_merchant(ec_bank, identity, session=session, keys=(sig, kex), renewing=old)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
    assert certificates_naming(ec_bank, identity.merchant_id) == held
    with _reading(ec_bank) as tx:
        assert not any(tx.key_claimed(key_thumbprint(spki_of(k.public_key))) for k in (sig, kex))


@pytest.mark.parametrize("presented", PRESENTED)
def test_a_cardholder_renewal_through_a_revoked_certificate_is_refused_whichever_twin(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    """The same for a cardholder: the revoked certificate's key renews nothing."""
    first, _, key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert first.certificate is not None
    old = _presenting(first.credentials(REQUESTERS, key), presented)
    session = start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL)
    thumb = first.certificate.thumbprint
    _revoked_after_verifying(
        monkeypatch, ca_cardholder, "verify_card_cert_request",
        lambda: _revoke_elsewhere(ec_bank, (thumb,)),
    )  # fmt: skip
    new = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, new, CARD, EXPIRY, renewing=old)
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
    with _reading(ec_bank) as tx:
        assert not tx.key_claimed(key_thumbprint(spki_of(new.public_key)))


def test_a_merchant_renews_through_the_twin_of_its_live_certificate(ec_bank: Bank) -> None:
    """Not revoked, the twin renews as the certificate would: it proves possession of the
    same key under the same merchant ID, and refusing it would protect nothing (the holder
    has the certificate too)."""
    identity = _merchant("live")
    first, state, _ = register_merchant(ec_bank, identity)
    old = _presenting(first.credentials(REQUESTERS, state), "twin")
    session = start_merchant(ec_bank, identity, request_type=MER_RENEWAL)
    renewed, *_ = register_merchant(ec_bank, identity, session=session, renewing=old)
    assert renewed.complete and renewed.signature is not None
    assert renewed.signature.subject_id == identity.merchant_id
    assert len(certificates_naming(ec_bank, identity.merchant_id)) == 4


def test_a_cardholder_renews_through_the_twin_of_its_live_certificate(ec_bank: Bank) -> None:
    first, _, key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    old = _presenting(first.credentials(REQUESTERS, key), "twin")
    session = start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL)
    renewed, *_ = register_cardholder(ec_bank, CARD, EXPIRY, session=session, renewing=old)
    assert renewed.complete and renewed.certificate is not None


def _certificate(thumb: bytes, serial: int, issuer: bytes) -> IssuedCertificate:
    return IssuedCertificate(thumb, serial, issuer, MERCHANT, "signature", "m-shop", b"", 1, 0)


def test_a_revocation_is_found_by_issuer_and_serial_through_an_index(tmp_path: Path) -> None:
    """The serial alone is not enough (two CAs may draw the same), nor the thumbprint."""
    store = CaStore.open(tmp_path / "ca.db", create=True)
    ca, other_ca = b"\x0a" * 32, b"\x0b" * 32
    with store.write() as tx:
        for cert in (_certificate(b"\x01" * 32, 7, ca), _certificate(b"\x02" * 32, 7, other_ca)):
            tx.add_certificate(cert)
        tx.revoke(_certificate(b"\x01" * 32, 7, ca), 500)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    with store.write() as tx:  # asked in the transaction that decides the renewal
        assert tx.serial_revoked(ca, 7)
        assert not tx.serial_revoked(other_ca, 7)
        assert not tx.serial_revoked(ca, 8)
    store._db.set_trace_callback(None)
    query = next(s for s in statements if "FROM revocations" in s)
    plan = " ".join(row[3] for row in store._db.execute(f"EXPLAIN QUERY PLAN {query}"))
    store.close()
    assert "revocations_by_serial" in plan, plan
