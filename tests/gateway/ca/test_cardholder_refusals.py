"""A cardholder CertReq the issuer refuses, through the real gRPC CA: one answer whatever
the reason, a card refused outright past its limit of refusals, and nothing of the
request kept but its answer."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.ca.card_failures import CARD_FAILURE_LIMIT
from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore
from gateway.ledger.pan import card_refusals_key, pan_index
from hsm.base import KeyUsage
from setcore.errors import ErrorCode
from setcore.registration import ca_error
from setcore.registration_cardholder import build_card_cert_inquiry, open_card_cert_response
from setpay.v1 import registration_pb2
from tests.cards import card

from .conftest import EXPIRY, Bank
from .flows import (
    REQUESTERS,
    card_request,
    new_key,
    purge_answers,
    register_cardholder,
    sent_digest,
    start_cardholder,
)
from .ledger_issuer_support import ca_asking

S = registration_pb2
COMPLETE = S.CERT_STATUS_CODE_REQUEST_COMPLETE
REJECTED_BY_ISSUER = S.CERT_STATUS_CODE_REJECTED_BY_ISSUER
EUR = 978
# Cards of these tests' own (the banks are shared by the session): BIN and serials.
TEST_BIN = "492913"


def _card(serial: int) -> str:
    return card(TEST_BIN, serial)


def _wrong_expiries(count: int) -> list[str]:
    """``count`` expiry months, none of them EXPIRY, all in the future."""
    return [f"2031{month:02d}" for month in range(1, count + 1)]


def _ca_db_values(bank: Bank) -> bytes:
    """Every value of every table of ca.db, as bytes, joined.

    Read through SQLite: a file descriptor of this process opened on the database file
    and closed again would drop the POSIX locks the CA's own connection holds on it.
    """
    db = sqlite3.connect(f"file:{bank.config.path(bank.config.ca_db)}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        values = [
            value if isinstance(value, bytes) else str(value).encode()
            for table in tables
            for row in db.execute(f"SELECT * FROM {table}")
            for value in row
        ]
    finally:
        db.close()
    return b"\x00".join(values)


def test_the_issuer_answers_alike_for_an_unknown_card_and_a_wrong_expiry(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the bank's own LedgerDirectory: which numbers are cards, and their expiry,
    are not told to the requester; the log tells the bank, never the card number."""
    keys = LedgerKeys(data_key=os.urandom(32), index_key=os.urandom(32))
    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), keys)
    victim, stranger = _card(1), _card(2)
    ledger.open_card_account(victim, EXPIRY, 50_000, EUR)
    try:
        with ca_asking(ec_bank, ledger) as bank, caplog.at_level(logging.INFO):
            unknown, *_ = register_cardholder(bank, stranger, EXPIRY)
            wrong, *_ = register_cardholder(bank, victim, "203111")
            right, *_ = register_cardholder(bank, victim, EXPIRY)
        assert unknown.status == wrong.status == REJECTED_BY_ISSUER
        assert right.complete
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "the issuer answered CERT_STATUS_CODE_UNKNOWN_ACCOUNT" in logged
        assert "the issuer answered CERT_STATUS_CODE_REJECTED_BY_ISSUER" in logged
        assert victim not in logged and stranger not in logged
        # The refusals are counted under the ledger's keyed hash; no card number in ca.db.
        stored = _ca_db_values(ec_bank)
        assert card_refusals_key(keys, stranger) in stored
        assert pan_index(keys, stranger) not in stored  # no value to join with the ledger
        assert victim.encode() not in stored and stranger.encode() not in stored
    finally:
        ledger.close()


def test_a_card_past_its_limit_of_refusals_is_refused_even_with_the_right_expiry(
    ec_bank: Bank, caplog: pytest.LogCaptureFixture
) -> None:
    """Trying one expiry month after another finds a known card number's expiry in at
    most sixty tries: once the card reaches its limit, even the right month is refused."""
    guessed = _card(3)
    ec_bank.issuer.cards[guessed] = (EXPIRY, COMPLETE)
    for expiry in _wrong_expiries(CARD_FAILURE_LIMIT):
        outcome, *_ = register_cardholder(ec_bank, guessed, expiry)
        assert outcome.status == REJECTED_BY_ISSUER
    with caplog.at_level(logging.INFO):
        found, *_ = register_cardholder(ec_bank, guessed, EXPIRY)
    assert found.status == REJECTED_BY_ISSUER and found.certificate is None
    assert any("past its limit of refusals" in r.getMessage() for r in caplog.records)
    # Kept in ca.db: a restarted CA (or another worker) refuses the card too.
    with ca_asking(ec_bank, ec_bank.issuer) as restarted:
        again, *_ = register_cardholder(restarted, guessed, EXPIRY)
    assert again.status == REJECTED_BY_ISSUER
    # Another card is not held back by it.
    other = _card(4)
    ec_bank.issuer.cards[other] = (EXPIRY, COMPLETE)
    outcome, *_ = register_cardholder(ec_bank, other, EXPIRY)
    assert outcome.complete


def test_a_certified_card_starts_its_count_again(ec_bank: Bank) -> None:
    mistyped = _card(5)
    ec_bank.issuer.cards[mistyped] = (EXPIRY, COMPLETE)
    for _ in range(2):
        for expiry in _wrong_expiries(CARD_FAILURE_LIMIT - 1):
            outcome, *_ = register_cardholder(ec_bank, mistyped, expiry)
            assert outcome.status == REJECTED_BY_ISSUER
        outcome, *_ = register_cardholder(ec_bank, mistyped, EXPIRY)
        assert outcome.complete


def test_a_refusal_is_kept_as_its_answer_only(ec_bank: Bank) -> None:
    """Neither the wallet's back key nor the card's expiry month stays in ca.db; a resend
    gets the same answer; once the answer is purged, a resend is refused still."""
    refused_card = _card(6)
    ec_bank.issuer.cards[refused_card] = (EXPIRY, COMPLETE)  # the request's expiry is not
    session = start_cardholder(ec_bank, refused_card)
    request, state = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), refused_card, "203105"
    )
    first = ec_bank.stub.Cert(request)
    assert open_card_cert_response(first, state, session.trust).status == REJECTED_BY_ISSUER
    db = sqlite3.connect(f"file:{ec_bank.config.path(ec_bank.config.ca_db)}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT back_key, card_expiry FROM requests WHERE rrpid = ?", (state.exchange.rrpid,)
        ).fetchall()
    finally:
        db.close()
    assert rows == []
    assert state.back_key not in _ca_db_values(ec_bank)
    assert ec_bank.stub.Cert(request).cert_res == first.cert_res
    # A CertInq finds no request to report: the wallet registers again.
    inquiry, _ = build_card_cert_inquiry(REQUESTERS, state)
    response = ec_bank.stub.CertInq(inquiry)
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA,
        inquiry.header.rrpid, request=sent_digest(inquiry),
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    # The answer purged: the request is refused still (its Chall-CA was used), never
    # decided again.
    purge_answers(ec_bank)
    resent = open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert resent.status == S.CERT_STATUS_CODE_CHALLENGE_MISMATCH
    assert resent.certificate is None
