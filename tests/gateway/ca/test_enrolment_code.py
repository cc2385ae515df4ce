"""The enrolment code at the real Cardholder CA over gRPC, asking the bank's own
LedgerDirectory over a real ledger: a card with a code registers only with it, every
refusal of it gets the one answer, and none of them ever locks the card; a card without
a code still locks after its limit, until the bank gives it a code."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca.card_failures import CARD_FAILURE_LIMIT
from gateway.ca.records import CardFailures
from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore
from gateway.ledger.enrolment import new_enrolment_code, normalize_enrolment_code
from gateway.ledger.pan import card_refusals_key
from hsm.base import KeyUsage
from setcore.registration_cardholder import (
    ENROLMENT_CODE_FIELD,
    CardCertificate,
    open_card_cert_response,
)
from setpay.v1 import registration_pb2
from tests.cards import card

from .conftest import EXPIRY, Bank
from .flows import card_request, filled_form, new_key, start_cardholder
from .ledger_issuer_support import ca_asking

S = registration_pb2
REJECTED_BY_ISSUER = S.CERT_STATUS_CODE_REJECTED_BY_ISSUER
EUR = 978
# Cards of these tests' own (the banks are shared by the session): BIN and serials.
TEST_BIN = "492915"
# Tries well past the limit a card without a code is locked at.
MANY_TRIES = 4 * CARD_FAILURE_LIMIT
# An ECDSA P-256 signature's DER encoding is 70 to 72 bytes (its integers' leading bytes).
ECDSA_DER_SLACK = 2


@pytest.fixture
def keys() -> LedgerKeys:
    return LedgerKeys(data_key=os.urandom(32), index_key=os.urandom(32))


@pytest.fixture
def ledger(tmp_path: Path, keys: LedgerKeys) -> Iterator[Ledger]:
    opened = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), keys)
    yield opened
    opened.close()


def _register(
    bank: Bank, pan: str, expiry: str, code: str | None, *, leave_out: bool = False
) -> tuple[CardCertificate, bytes]:
    """A registration whose form carries ``code`` (the field left out with
    ``leave_out``); the outcome and the CA's answer bytes."""
    session = start_cardholder(bank, pan)
    filled = [
        (name, code if name == ENROLMENT_CODE_FIELD and code is not None else value)
        for name, value in filled_form(session.form.fields)
        if not (leave_out and name == ENROLMENT_CODE_FIELD)
    ]
    request, state = card_request(
        session, new_key(bank, KeyUsage.SIGNATURE), pan, expiry, filled=filled
    )
    answer = bank.stub.Cert(request)
    return open_card_cert_response(answer, state, session.trust), answer.cert_res


def _counted(bank: Bank, key: bytes) -> CardFailures | None:
    """What ca.db counted against the card (its refusals key), through the CA's store."""
    store = open_ca_store(bank.config)
    try:
        with store.read() as tx:
            return tx.card_failures(key)
    finally:
        store.close()


def test_the_cardholder_form_asks_for_the_enrolment_code(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, card(TEST_BIN, 1))
    assert ENROLMENT_CODE_FIELD in session.form.fields


def test_a_card_with_a_code_registers_with_it_in_any_typed_form(
    ec_bank: Bank, ledger: Ledger
) -> None:
    pan, code = card(TEST_BIN, 2), new_enrolment_code()
    ledger.open_card_account(pan, EXPIRY, 50_000, EUR, enrolment_code=code)
    # As a person copies it from the letter: lower case, no dashes, O for 0 and l for 1.
    typed = code.replace("-", "").lower().replace("0", "o").replace("1", "l")
    with ca_asking(ec_bank, ledger) as bank:
        outcome, _ = _register(bank, pan, EXPIRY, typed)
    assert outcome.complete and outcome.certificate is not None


def test_wrong_code_missing_code_and_wrong_expiry_are_refused_alike_and_never_lock(
    ec_bank: Bank, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever knows the card number, however often it tries, neither learns anything nor
    keeps the holder from registering: the card is never locked."""
    pan, code = card(TEST_BIN, 3), new_enrolment_code()
    ledger.open_card_account(pan, EXPIRY, 50_000, EUR, enrolment_code=code)
    other = new_enrolment_code()
    tries = [
        (EXPIRY, other, False),  # another code
        (EXPIRY, "", False),  # the field empty: a wallet without the card file's code
        (EXPIRY, None, True),  # the field left out
        (EXPIRY, "not a code at all", False),
        ("203111", code, False),  # the right code, a wrong expiry
    ]
    answers: list[tuple[int, int, bool, object]] = []
    with ca_asking(ec_bank, ledger) as bank, caplog.at_level(logging.INFO):
        for i in range(MANY_TRIES):
            expiry, given, leave_out = tries[i % len(tries)]
            outcome, sent = _register(bank, pan, expiry, given, leave_out=leave_out)
            answers.append((outcome.status, len(sent), outcome.certificate is None, outcome.card))
        unknown, sent = _register(bank, card(TEST_BIN, 99), EXPIRY, code)  # no such card
        answers.append((unknown.status, len(sent), unknown.certificate is None, unknown.card))
        # Counted in ca.db like any refusal (the same work as an unknown number's), never
        # locked; until the certification below forgets the count.
        counted = _counted(bank, card_refusals_key(ledger._keys, pan))
        right, _ = _register(bank, pan, EXPIRY, code)
    assert {a[0] for a in answers} == {REJECTED_BY_ISSUER}
    # One answer: its length varies only as an ECDSA signature's DER encoding does.
    lengths = [a[1] for a in answers]
    assert max(lengths) - min(lengths) <= ECDSA_DER_SLACK
    assert all(a[2] and a[3] is None for a in answers)  # no certificate, no PANSecret
    assert right.complete, "a card with an enrolment code was locked by refusals"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "the enrolment code is not the card's" in logged
    assert "counted, never locked: the card has an enrolment code" in logged
    assert "past its limit" not in logged
    for secret in (pan, code, normalize_enrolment_code(code) or code, other):
        assert secret not in logged
    assert counted is not None and counted.failures == MANY_TRIES
    assert counted.locked_until_ms == 0


def test_a_refusal_of_a_card_with_a_code_does_the_bookkeeping_of_an_unknown_number(
    ec_bank: Bank, ledger: Ledger
) -> None:
    """Skipping ca.db for a card with a code made its refusal measurably quicker than an
    unknown number's: a timing oracle for "is this a card of this bank". Both are read
    and counted alike; only the lock differs."""
    coded, code = card(TEST_BIN, 6), new_enrolment_code()
    ledger.open_card_account(coded, EXPIRY, 50_000, EUR, enrolment_code=code)
    unknown = card(TEST_BIN, 98)
    with ca_asking(ec_bank, ledger) as bank:
        for pan in (coded, unknown):
            refused, _ = _register(bank, pan, "203111", code)
            assert refused.status == REJECTED_BY_ISSUER
    for pan in (coded, unknown):
        counted = _counted(ec_bank, card_refusals_key(ledger._keys, pan))
        assert counted is not None and counted.failures == 1, "a refusal skipped ca.db"


def test_a_card_without_a_code_still_locks_until_the_bank_gives_it_one(
    ec_bank: Bank, ledger: Ledger
) -> None:
    pan = card(TEST_BIN, 4)
    account = ledger.open_card_account(pan, EXPIRY, 50_000, EUR)
    with ca_asking(ec_bank, ledger) as bank:
        for month in range(1, CARD_FAILURE_LIMIT + 1):
            refused, _ = _register(bank, pan, f"2031{month:02d}", None)
            assert refused.status == REJECTED_BY_ISSUER
        locked, _ = _register(bank, pan, EXPIRY, None)
        assert locked.status == REJECTED_BY_ISSUER, "a card without a code is locked"
        # The bank gives it a code: its lock no longer holds, and nothing locks it again.
        code = new_enrolment_code()
        ledger.set_enrolment_code(account.account_id, code)
        for month in range(1, MANY_TRIES + 1):
            refused, _ = _register(bank, pan, f"2032{(month % 12) + 1:02d}", code)
            assert refused.status == REJECTED_BY_ISSUER
        without, _ = _register(bank, pan, EXPIRY, "")
        assert without.status == REJECTED_BY_ISSUER  # the code is asked for now
        right, _ = _register(bank, pan, EXPIRY, code)
    assert right.complete


def test_a_new_code_replaces_the_earlier_one(ec_bank: Bank, ledger: Ledger) -> None:
    pan, first = card(TEST_BIN, 5), new_enrolment_code()
    account = ledger.open_card_account(pan, EXPIRY, 50_000, EUR, enrolment_code=first)
    second = new_enrolment_code()
    ledger.set_enrolment_code(account.account_id, second)
    with ca_asking(ec_bank, ledger) as bank:
        old, _ = _register(bank, pan, EXPIRY, first)
        new, _ = _register(bank, pan, EXPIRY, second)
    assert old.status == REJECTED_BY_ISSUER
    assert new.complete


def test_the_ledger_keeps_no_code_in_clear(tmp_path: Path, keys: LedgerKeys) -> None:
    path = tmp_path / "codes.db"
    ledger = Ledger(SqliteLedgerStore(path), keys)
    codes = [new_enrolment_code() for _ in range(3)]
    try:
        for serial, code in enumerate(codes, start=10):
            ledger.open_card_account(card(TEST_BIN, serial), EXPIRY, 1, EUR, enrolment_code=code)
    finally:
        ledger.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("codes"))
    for code in codes:
        for form in (code, code.replace("-", ""), code.lower(), code.replace("-", "").lower()):
            assert form.encode() not in stored
