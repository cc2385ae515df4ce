"""A cardholder CertReq whose PANData0 names an expiry of no plausible year (year 0000
among them), through the real gRPC CA: a SET Error DECODING_FAILURE whatever the card,
known, unknown or refused outright past its limit, before anyone looks the card up.

The CA used to take year 0000 (a well-formed YYYYMM) and fail on it inside its deciding
transaction: UNSPECIFIED_FAILURE to the requester, a bug's traceback in the log, the
refusal not counted, and an answer that told a locked card (REJECTED_BY_ISSUER, given
before the expiry was looked at) from any other.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca.card_failures import CARD_FAILURE_LIMIT
from hsm.base import KeyUsage
from setcore.errors import ErrorCode, PeerError
from setcore.pan import PAN
from setcore.registration_cardholder import open_card_cert_response
from setpay.v1 import registration_pb2
from tests.cards import card

from .conftest import COMPLETE, EXPIRY, PENDED, REJECTED_BY_ISSUER, Bank
from .flows import CardSession, card_request, new_key, register_cardholder, start_cardholder
from .stored_answers import stored_answer

S = registration_pb2
# Cards of these tests' own (the banks are shared by the session): BIN and serials.
TEST_BIN = "492916"
KNOWN, UNKNOWN, LOCKED, REVIEWED = (card(TEST_BIN, n) for n in range(1, 5))
# Well formed, of no year a card expires in.
IMPLAUSIBLE = ("000012", "199912", "210001")


def _answer(bank: Bank, session: CardSession, pan: str, expiry: str) -> tuple[str, bytes]:
    """What the CA answers a CertReq of ``session`` for (``pan``, ``expiry``): a status or
    a SET Error's code, by name; and the request's RRPID."""
    request, state = card_request(session, new_key(bank, KeyUsage.SIGNATURE), pan, expiry)
    try:
        outcome = open_card_cert_response(bank.stub.Cert(request), state, session.trust)
    except PeerError as exc:
        return ErrorCode.Name(exc.code), state.exchange.rrpid
    return S.CertStatusCode.Name(outcome.status), state.exchange.rrpid


def _failures(bank: Bank, pan: str) -> int:
    store = open_ca_store(bank.config)
    try:
        with store.read() as tx:
            counted = tx.card_failures(bank.issuer.card_key(PAN(pan)))
    finally:
        store.close()
    return 0 if counted is None else counted.failures


def test_an_implausible_year_gets_one_answer_for_every_card_and_changes_nothing(
    ec_bank: Bank, caplog: pytest.LogCaptureFixture
) -> None:
    ec_bank.issuer.cards[KNOWN] = (EXPIRY, COMPLETE)
    for _ in range(CARD_FAILURE_LIMIT):  # wrong expiries until the card is refused outright
        assert _answer(ec_bank, start_cardholder(ec_bank, LOCKED), LOCKED, "203105")[0] == (
            S.CertStatusCode.Name(REJECTED_BY_ISSUER)
        )
    counted = {pan: _failures(ec_bank, pan) for pan in (KNOWN, UNKNOWN, LOCKED)}
    assert counted[LOCKED] == CARD_FAILURE_LIMIT
    sessions = {pan: start_cardholder(ec_bank, pan) for pan in (KNOWN, UNKNOWN, LOCKED)}
    with caplog.at_level(logging.INFO):
        for expiry in IMPLAUSIBLE:
            for pan, session in sessions.items():
                answer, rrpid = _answer(ec_bank, session, pan, expiry)
                assert answer == "ERROR_CODE_DECODING_FAILURE", (expiry, answer)
                assert stored_answer(ec_bank, rrpid) is None
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert {pan: _failures(ec_bank, pan) for pan in counted} == counted
    # Nothing of the sessions was used: the known card registers in its own.
    outcome, *_ = register_cardholder(ec_bank, KNOWN, EXPIRY, session=sessions[KNOWN])
    assert outcome.complete


def test_a_pended_request_whose_recorded_expiry_is_now_refused_is_refused_not_failed_on(
    ec_bank: Bank,
) -> None:
    """A request pended before the years were bounded may have recorded an expiry of a
    year ``check_expiry`` now refuses: deciding it refuses it (REJECTED_BY_ISSUER)."""
    ec_bank.issuer.cards[REVIEWED] = (EXPIRY, PENDED)
    outcome, state, _, session = register_cardholder(ec_bank, REVIEWED, EXPIRY)
    assert outcome.status == PENDED
    path = ec_bank.config.path(ec_bank.config.ca_db)
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(
                "UPDATE requests SET card_expiry = '210012' WHERE rrpid = ?",
                (state.exchange.rrpid,),
            )
    finally:
        db.close()
    lid_ca = session.registration.ca.lid_ca
    assert ec_bank.ca.decide_pending(session.lid_ee, lid_ca, approve=True) == REJECTED_BY_ISSUER
