"""A wallet's CertReq meeting a damaged issuer ledger: UNAVAILABLE, then answered once
the file is restored; never a signed Error, which the wallet would take as the CA's
answer to a request nothing was decided for.

The CA asks the issuer ledger whether the card exists inside the transaction that
decides the request (``gateway.ca.cardholder``). With a page of the ledger damaged,
SQLite says SQLITE_CORRUPT; the ledger used to call that a failure (``StoreError``),
which reached the CA as a bug and was answered with a signed UNSPECIFIED_FAILURE Error.
Now it is the ledger away (``StoreUnavailable``, ``IssuerUnavailable`` at the CA), as a
damaged ca.db already was. Real parts: the bank's keys, a scratch ca.db, the issuer
ledger on a real SQLite file damaged on purpose (``damaged_files``), behind the bank's
own ``LedgerDirectory``, the CA served by gRPC on port 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

from gateway.ca import CertificateAuthority
from gateway.ca import servicer as ca_servicer
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger
from hsm.base import KeyUsage
from setcore.pan import PAN
from setcore.registration_cardholder import build_card_cert_request, open_card_cert_response
from tests.gateway.ledger.damaged_files import ScratchLedger

from .conftest import CARD, COMPLETE, EXPIRY, Bank, serving
from .flows import REQUESTERS, filled_form, new_key, start_cardholder
from .revocation_support import authority_keys, bank_trust, new_ca_db

EUR = 978
CREDIT_LIMIT = 100_000


class ReopenedIssuer:
    """The bank's ``LedgerDirectory`` on a ledger the test closes and opens again, as
    the operator restarting the bank after restoring its file would."""

    def __init__(self, scratch: ScratchLedger) -> None:
        self._scratch = scratch
        self.ledger = scratch.open()

    def closed(self) -> ScratchLedger:
        """The ledger closed (its file whole and alone), to be damaged or restored."""
        self.ledger.close()
        return self._scratch

    def reopen(self) -> None:
        self.ledger = self._scratch.open()

    def check_card(self, pan: PAN, expiry: str) -> int:
        return LedgerDirectory(self.ledger).check_card(pan, expiry)

    def card_key(self, pan: PAN) -> bytes:
        return LedgerDirectory(self.ledger).card_key(pan)

    def may_register_merchant(self, merchant_id: str, account: str | None) -> bool:
        return LedgerDirectory(self.ledger).may_register_merchant(merchant_id, account)

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        LedgerDirectory(self.ledger).merchant_registered(merchant_id, name)


@dataclass
class Served:
    bank: Bank  # the EC bank's keys, this test's CA and stub
    issuer: ReopenedIssuer


def _card(ledger: Ledger) -> None:
    ledger.open_card_account(CARD, EXPIRY, CREDIT_LIMIT, EUR)


@pytest.fixture
def served(ec_bank: Bank, tmp_path: Path) -> Iterator[Served]:
    scratch = ScratchLedger.make(tmp_path, _card)
    issuer = ReopenedIssuer(scratch)
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    try:
        keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
        ca = CertificateAuthority(keys, store, bank_trust(ec_bank.pki), issuer)
        with serving(ca) as stub:
            yield Served(replace(ec_bank, ca=ca, stub=stub), issuer)
    finally:
        store.close()
        issuer.ledger.close()


def test_a_cert_request_meeting_a_damaged_ledger_is_unavailable_until_restored(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    bank = served.bank
    session = start_cardholder(bank, CARD)
    key = new_key(bank, KeyUsage.SIGNATURE)
    request, state = build_card_cert_request(
        REQUESTERS, key, session.form, session.registration, PAN(CARD), EXPIRY,
        filled=filled_form(session.form.fields),
    )  # fmt: skip

    served.issuer.closed().damage_table("card_accounts")
    served.issuer.reopen()
    with (
        caplog.at_level(logging.INFO, logger=ca_servicer.__name__),
        pytest.raises(grpc.RpcError) as failed,
    ):
        answered = bank.stub.Cert(request)
        pytest.fail(f"answered with a response ({answered.WhichOneof('result')}), not a status")
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert failed.value.details() == "certificate authority issuer unavailable"  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no bug logged

    # The operator restores the ledger; the wallet sends the same bytes again.
    served.issuer.closed().restore()
    served.issuer.reopen()
    outcome = open_card_cert_response(bank.stub.Cert(request), state, session.trust)
    assert outcome.status == COMPLETE and outcome.certificate is not None
