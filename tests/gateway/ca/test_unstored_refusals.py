"""CertReq refusals that change nothing (CHALLENGE_MISMATCH, REJECTED_BY_AGENT,
KEY_ALREADY_CERTIFIED) have no answer kept in ca.db, through the real gRPC CA: anyone
can provoke them without a card or an account, and a week of their answers let one
client fill ca.db. A resend of the same bytes is decided again, and refused again; the
RRPID stays free. Outcomes that changed ca.db (certified, a refusal by the issuer,
counted against the card) keep their answer, which a resend gets byte for byte."""

from __future__ import annotations

import os

from hsm.base import KeyUsage
from setcore.pki.truststore import TrustStore
from setcore.registration_cardholder import CardRequestState, open_card_cert_response
from setcore.registration_merchant import open_merchant_cert_response
from setpay.v1 import registration_pb2
from tests.cards import card

from .conftest import CARD, EXPIRY, UNKNOWN_CARD, Bank
from .flows import (
    card_request,
    merchant_request,
    new_key,
    register_cardholder,
    register_merchant,
    start_cardholder,
    start_merchant,
)
from .stored_answers import stored_answer, stored_answers
from .test_merchant import _merchant

S = registration_pb2
CHALLENGE_MISMATCH = S.CERT_STATUS_CODE_CHALLENGE_MISMATCH
REJECTED_BY_AGENT = S.CERT_STATUS_CODE_REJECTED_BY_AGENT
KEY_ALREADY_CERTIFIED = S.CERT_STATUS_CODE_KEY_ALREADY_CERTIFIED
REJECTED_BY_ISSUER = S.CERT_STATUS_CODE_REJECTED_BY_ISSUER
# A card of these tests' own (the banks are shared by the session).
REFUSED_CARD = card("492917", 1)
# Requests one anonymous client sends here: enough to see that none is kept.
FLOOD = 50


def _card_status(
    bank: Bank, request: S.CertRequest, state: CardRequestState, trust: TrustStore
) -> int:
    return open_card_cert_response(bank.stub.Cert(request), state, trust).status


def test_a_flood_of_anonymous_challenge_mismatches_leaves_ca_db_as_it_was(ec_bank: Bank) -> None:
    """No card the bank knows, one self-made key, a random Chall-CA each time."""
    session = start_cardholder(ec_bank, UNKNOWN_CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    before = stored_answers(ec_bank)
    for _ in range(FLOOD):
        request, state = card_request(session, key, UNKNOWN_CARD, EXPIRY, chall_ca=os.urandom(32))
        assert _card_status(ec_bank, request, state, session.trust) == CHALLENGE_MISMATCH
        assert stored_answer(ec_bank, state.exchange.rrpid) is None
    assert stored_answers(ec_bank) == before


def test_a_cardholder_refusal_that_changes_nothing_is_decided_again(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    refused = {
        CHALLENGE_MISMATCH: card_request(session, key, CARD, EXPIRY, chall_ca=os.urandom(32)),
        REJECTED_BY_AGENT: card_request(session, key, CARD, EXPIRY, brand_id="another brand"),
    }
    for status, (request, state) in refused.items():
        first = ec_bank.stub.Cert(request)
        assert open_card_cert_response(first, state, session.trust).status == status
        assert stored_answer(ec_bank, state.exchange.rrpid) is None
        # The same bytes again: decided again, sealed afresh, the same refusal.
        again = ec_bank.stub.Cert(request)
        assert again.cert_res != first.cert_res
        assert open_card_cert_response(again, state, session.trust).status == status
    # Nothing was decided under the RRPID: a request under it is decided, not RRPID_REUSED,
    # and the session's Chall-CA was still unused.
    rrpid = refused[CHALLENGE_MISMATCH][1].exchange.rrpid
    request, state = card_request(session, key, CARD, EXPIRY, rrpid=rrpid)
    assert open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust).complete
    assert stored_answer(ec_bank, rrpid) is not None
    # The key is claimed now: a request for it elsewhere is refused, and nothing is kept.
    session = start_cardholder(ec_bank, CARD)
    request, state = card_request(session, key, CARD, EXPIRY)
    assert _card_status(ec_bank, request, state, session.trust) == KEY_ALREADY_CERTIFIED
    assert stored_answer(ec_bank, state.exchange.rrpid) is None


def test_a_refusal_by_the_issuer_keeps_its_answer(ec_bank: Bank) -> None:
    """It used the session's Chall-CA and counted against the card: decided again it would
    be CHALLENGE_MISMATCH, so a resend gets the stored bytes."""
    outcome, state, *_ = register_cardholder(ec_bank, REFUSED_CARD, EXPIRY)
    assert outcome.status == REJECTED_BY_ISSUER
    assert stored_answer(ec_bank, state.exchange.rrpid) is not None


def test_a_merchant_refusal_that_changes_nothing_is_not_kept(ec_bank: Bank) -> None:
    identity = _merchant("unkept")
    session = start_merchant(ec_bank, identity)
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    filled = [(name, "Corner Shop Ltd") for name in session.registration.form.fields]
    refused = {
        CHALLENGE_MISMATCH: merchant_request(
            session, sig, kex, chall_ca=os.urandom(32), filled=filled
        ),
        REJECTED_BY_AGENT: merchant_request(
            session, sig, kex, brand_id="another brand", filled=filled
        ),
    }
    for status, (request, state) in refused.items():
        for _ in range(2):  # and the same bytes again
            outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
            assert outcome.status == status
        assert stored_answer(ec_bank, state.exchange.rrpid) is None
    outcome, state, _ = register_merchant(ec_bank, identity, session=session, keys=(sig, kex))
    assert outcome.complete
    assert stored_answer(ec_bank, state.exchange.rrpid) is not None
    other = _merchant("unkept-keys")
    session = start_merchant(ec_bank, other)
    request, state = merchant_request(session, sig, kex, filled=filled)
    outcome = open_merchant_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert outcome.status == KEY_ALREADY_CERTIFIED
    assert stored_answer(ec_bank, state.exchange.rrpid) is None
