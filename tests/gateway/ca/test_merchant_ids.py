"""Who may have a merchant ID: its live certificates' holder, who renews; once they are
revoked or expired, whoever names the settlement account the acquirer holds under the ID.

Nothing else validates a merchant's requester out of band, and the acquirer's account
under the ID outlives the certificates: it holds the lapsed merchant's settled money, and
every certificate under the ID settles into it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from gateway.bank_pki import open_ca_store
from gateway.ca import CertificateAuthority
from hsm.base import KeyUsage
from setcore.freshness import now_ms
from setcore.pki.issuance import END_ENTITY_LIFETIME
from setcore.pki.roles import MERCHANT
from setcore.registration_merchant import (
    build_me_aq_c_init_request,
    open_me_aq_c_init_response,
    open_merchant_cert_response,
)
from setpay.v1 import registration_pb2

from .conftest import Bank
from .flows import (
    MER_INITIAL,
    MER_RENEWAL,
    REQUESTERS,
    MerchantSession,
    certificates_naming,
    merchant_request,
    new_key,
    new_trust,
    register_merchant,
    start_merchant,
)
from .test_merchant import _key_claimed, _merchant

S = registration_pb2


def test_a_merchant_id_with_live_certificates_is_not_registered_again(ec_bank: Bank) -> None:
    identity = _merchant("taken")
    first, *_ = register_merchant(ec_bank, identity)
    assert first.signature is not None and first.key_exchange is not None
    held = certificates_naming(ec_bank, identity.merchant_id)
    assert [thumb for thumb, _ in held] == [
        first.signature.thumbprint,
        first.key_exchange.thumbprint,
    ]
    # A stranger starts a registration under the same merchant ID, with keys of its own.
    session = start_merchant(ec_bank, identity)
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(session, sig, kex)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    assert outcome.signature is None and outcome.key_exchange is None
    # Nothing changed: no certificate, no key taken, the acquirer's books told once.
    assert certificates_naming(ec_bank, identity.merchant_id) == held
    assert not _key_claimed(ec_bank, sig) and not _key_claimed(ec_bank, kex)
    assert ec_bank.issuer.merchants.count(identity.subject) == 1
    # One of the two certificates revoked: the other still holds the name.
    ec_bank.ca.revoke(thumb=first.signature.thumbprint)
    request, state = merchant_request(session, sig, kex)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    # Both revoked (as the operator does with ``setpay ca revoke``): the name is free of
    # certificates, and the acquirer's account under it is still the first merchant's.
    ec_bank.ca.revoke(thumb=first.key_exchange.thumbprint)
    request, state = merchant_request(session, sig, kex)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    # Whoever the bank gives that account's id registers: the same session's Chall-CA
    # and the same keys were left unspent.
    account = ec_bank.issuer.accounts[identity.merchant_id]
    again, *_ = register_merchant(
        ec_bank, identity, session=session, keys=(sig, kex), account=account
    )
    assert again.complete and again.signature is not None
    assert again.signature.certificate_type == MERCHANT
    assert again.signature.merchant_data is not None
    assert again.signature.merchant_data.merchant_id == identity.merchant_id
    assert ec_bank.issuer.merchants.count(identity.subject) == 2


def test_a_live_merchant_renews_rather_than_registers_again(ec_bank: Bank) -> None:
    identity = _merchant("renews")
    first, state, _ = register_merchant(ec_bank, identity)
    assert first.complete
    second, *_ = register_merchant(ec_bank, identity)
    assert second.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    # The holder proves possession of the live certificate's key: renewed.
    session = start_merchant(ec_bank, identity, request_type=MER_RENEWAL)
    renewed, *_ = register_merchant(
        ec_bank, identity, session=session, renewing=first.credentials(REQUESTERS, state)
    )
    assert renewed.complete and renewed.signature is not None
    assert len(certificates_naming(ec_bank, identity.merchant_id)) == 4


def test_a_merchant_id_whose_certificates_expired_registers_again_with_its_account(
    ec_bank: Bank,
) -> None:
    identity = _merchant("lapsed")
    # A CA whose clock runs a year and two days behind issues certificates that have
    # expired by now (the same keys, ca.db and acquirer's books as the served CA).
    behind = END_ENTITY_LIFETIME + timedelta(days=2)
    then = now_ms() - int(behind.total_seconds() * 1000)
    store = open_ca_store(ec_bank.config)
    try:
        past = CertificateAuthority(
            ec_bank.pki.authority_keys(), store, ec_bank.pki.trust, ec_bank.issuer,
            clock=lambda: then,
        )  # fmt: skip
        trust = new_trust(ec_bank)
        init, init_state = build_me_aq_c_init_request(
            MER_INITIAL, identity, ec_bank.brand_id, os.urandom(8)
        )
        answer = S.MeAqCInitResponse(me_aq_c_init_res=past.me_aq_c_init(init))
        registration = open_me_aq_c_init_response(answer, init_state, trust)
        sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
        # Dated by the CA's clock, which judges the date.
        session = MerchantSession(trust, init_state, registration)
        request, _ = merchant_request(session, sig, kex, request_date=then)
        past.cert(request)  # its certificates are expired today: not opened here
        with store.read() as tx:
            assert tx.holds_live_certificate(identity.merchant_id, MERCHANT, then)
            assert not tx.holds_live_certificate(identity.merchant_id, MERCHANT, now_ms())
    finally:
        store.close()
    held = certificates_naming(ec_bank, identity.merchant_id)
    assert len(held) == 2 and all(not_after < now_ms() for _, not_after in held)
    assert ec_bank.issuer.merchants.count(identity.subject) == 1
    # Today the name holds no live certificate, but the acquirer still holds the lapsed
    # merchant's settlement account under it: a request that does not name that account
    # (none, or another) is refused, and nothing changes.
    account = ec_bank.issuer.accounts[identity.merchant_id]
    for named in (None, "acct-of-someone-else", account + "x"):
        outcome, *_ = register_merchant(ec_bank, identity, account=named)
        assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT, named
        assert outcome.signature is None
    assert len(certificates_naming(ec_bank, identity.merchant_id)) == 2
    assert ec_bank.issuer.merchants.count(identity.subject) == 1
    # The merchant the bank gave the account id to registers again.
    outcome, *_ = register_merchant(ec_bank, identity, account=account)
    assert outcome.complete and outcome.signature is not None
    assert len(certificates_naming(ec_bank, identity.merchant_id)) == 4
    assert ec_bank.issuer.merchants.count(identity.subject) == 2


def test_one_key_as_signature_and_key_exchange_key_is_refused_and_claimed_by_nobody(
    ec_bank: Bank,
) -> None:
    """A key certified twice would be certified for two uses (SET-PROTOCOL.md 4.3 rule 4):
    KEY_ALREADY_CERTIFIED, and the key stays free for a request that names it once."""
    session = start_merchant(ec_bank, _merchant("one-key"))
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = merchant_request(session, key, key)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == S.CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED
    assert outcome.signature is None and outcome.key_exchange is None
    assert not _key_claimed(ec_bank, key)
