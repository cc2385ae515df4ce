"""A damaged ledger file is an outage until the operator restores it, not a failure.

A page of the database damaged (SQLITE_CORRUPT) or a file that is no database at all
(SQLITE_NOTADB) used to be a plain ``StoreError``: the gateway answered it with a signed
UNSPECIFIED_FAILURE Error, its word on a request it never decided, and the CA asking
the issuer about a card did the same (``tests.gateway.ca.test_issuer_damaged_ledger``).
It is ``StoreUnavailable`` now, answered UNAVAILABLE: the requester sends the same
request again, and once the file is restored from its copy that RRPID is decided, once.
Real SQLite files, damaged on purpose (``damaged_files``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.ledger import Authorized, Ledger, SqliteLedgerStore, StoreError, StoreUnavailable
from tests.gateway.ledger.damaged_files import HEADER_BYTES, Opener, ScratchLedger
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    Bank,
    ServedSqliteStore,
)

STORES: dict[str, Opener] = {
    "sqlite": SqliteLedgerStore,
    # Over the ledger service's socket, as the workers reach it: the error crosses the
    # wire as the same class (``wire.shippable_error``).
    "sqlite-service": ServedSqliteStore,
}


def _accounts(ledger: Ledger) -> None:
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)


@pytest.fixture
def scratch(tmp_path: Path) -> ScratchLedger:
    return ScratchLedger.make(tmp_path, _accounts)


@pytest.mark.parametrize("store", STORES)
def test_a_damaged_page_is_an_outage_until_the_file_is_restored(
    scratch: ScratchLedger, store: str
) -> None:
    assert "card_accounts" in scratch.damage_table("card_accounts")
    ledger = scratch.open(STORES[store])
    bank = Bank(ledger)
    try:
        # A read (the CA asking whether a card exists, a settlement looking up a hold).
        with pytest.raises(StoreError) as looked_up:
            ledger.find_card_account(PAN_A)
        assert isinstance(looked_up.value, StoreUnavailable), repr(looked_up.value)
        assert "SQLITE_CORRUPT" in str(looked_up.value)
        # A decision: nothing is decided, nothing kept under the RRPID.
        with pytest.raises(StoreUnavailable):
            bank.authorize(rrpid=b"rrpid-damaged", digest=b"digest-damaged")
        assert bank.outcomes == []
    finally:
        ledger.close()

    scratch.restore()
    ledger = scratch.open(STORES[store])
    bank = Bank(ledger)
    try:
        # The merchant sends the same request again: decided now, once.
        outcome = bank.authorize(rrpid=b"rrpid-damaged", digest=b"digest-damaged")
        assert isinstance(outcome, Authorized), outcome
        assert ledger.find_card_account(PAN_A).account_id == outcome.card_account_id
        ledger.check_balanced()
    finally:
        ledger.close()


def test_a_file_that_is_no_database_is_an_outage_until_it_is_restored(
    scratch: ScratchLedger,
) -> None:
    """A file whose header is gone (overwritten, or another file copied in its place):
    the store does not open, as a database that is away; nothing is made in its place."""
    scratch.damage_header()
    with pytest.raises(StoreError) as opened:
        SqliteLedgerStore(scratch.path)
    assert isinstance(opened.value, StoreUnavailable), repr(opened.value)
    assert "SQLITE_NOTADB" in str(opened.value)
    assert isinstance(opened.value.__cause__, sqlite3.DatabaseError)
    assert scratch.path.read_bytes()[:HEADER_BYTES] == b"\0" * HEADER_BYTES  # left as found

    scratch.restore()
    ledger = scratch.open()
    try:
        assert ledger.find_card_account(PAN_A).expiry == EXPIRY
    finally:
        ledger.close()
