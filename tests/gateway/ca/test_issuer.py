"""The CA while the issuer's ledger is away: UNAVAILABLE, nothing decided, and the same
request bytes certified once the ledger is back.

The issuer here is the bank's own (``gateway.issuer.LedgerDirectory`` over a real SQLite
ledger); its database goes away by closing the store, which then answers every call with
the ledger's ``StoreUnavailable``.
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore
from hsm.base import KeyUsage
from setcore.freshness import new_id
from setcore.registration_cardholder import open_card_cert_response
from setcore.registration_merchant import MerchantIdentity, open_merchant_cert_response
from setpay.v1 import registration_pb2

from .conftest import CARD, EXPIRY, Bank
from .flows import (
    card_request,
    merchant_request,
    new_key,
    start_cardholder,
    start_merchant,
)
from .ledger_issuer_support import ca_asking

EUR = 978
REJECTED_BY_AGENT = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_AGENT


@pytest.fixture
def ledger_keys() -> LedgerKeys:
    return LedgerKeys(data_key=os.urandom(32), index_key=os.urandom(32))


def _ledger(path: Path, keys: LedgerKeys) -> Ledger:
    return Ledger(SqliteLedgerStore(path), keys)


def _assert_issuer_unavailable(failed: pytest.ExceptionInfo[grpc.RpcError]) -> None:
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert failed.value.details() == "certificate authority issuer unavailable"  # type: ignore[attr-defined]


def test_a_card_the_issuer_cannot_look_up_now_is_unavailable(
    ec_bank: Bank, tmp_path: Path, ledger_keys: LedgerKeys
) -> None:
    path = tmp_path / "ledger.db"
    away = _ledger(path, ledger_keys)
    away.open_card_account(CARD, EXPIRY, 100_000, EUR)
    away.close()
    with ca_asking(ec_bank, away) as bank:
        session = start_cardholder(bank, CARD)
        request, state = card_request(session, new_key(bank, KeyUsage.SIGNATURE), CARD, EXPIRY)
        with pytest.raises(grpc.RpcError) as failed:
            bank.stub.Cert(request)
        _assert_issuer_unavailable(failed)
    # Nothing was decided (Chall-CA unused, key unclaimed): the same bytes, once the
    # ledger is back, get the certificate.
    back = _ledger(path, ledger_keys)
    try:
        with ca_asking(ec_bank, back) as bank:
            outcome = open_card_cert_response(bank.stub.Cert(request), state, session.trust)
        assert outcome.complete
    finally:
        back.close()


def test_a_merchant_the_acquirer_cannot_book_now_is_unavailable(
    ec_bank: Bank, tmp_path: Path, ledger_keys: LedgerKeys
) -> None:
    path = tmp_path / "ledger.db"
    away = _ledger(path, ledger_keys)
    away.close()
    identity = MerchantIdentity(f"m-unbooked-{new_id().hex()[:8]}", "Unbooked Ltd")
    with ca_asking(ec_bank, away) as bank:
        session = start_merchant(bank, identity)
        sig, kex = new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE)
        request, state = merchant_request(session, sig, kex)
        with pytest.raises(grpc.RpcError) as failed:
            bank.stub.Cert(request)
        _assert_issuer_unavailable(failed)
    back = _ledger(path, ledger_keys)
    try:
        with ca_asking(ec_bank, back) as bank:
            outcome = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
        assert outcome.complete
        assert back.merchant_account(identity.merchant_id).merchant_id == identity.merchant_id
    finally:
        back.close()


def test_a_merchant_id_the_bank_enrolled_registers_only_with_its_account(
    ec_bank: Bank, tmp_path: Path, ledger_keys: LedgerKeys
) -> None:
    # The bank opened the settlement account first (``setpay bank open-merchant``): the
    # ID is taken, and its account id is what the bank gives its merchant.
    ledger = _ledger(tmp_path / "ledger.db", ledger_keys)
    identity = MerchantIdentity(f"m-enrolled-{new_id().hex()[:8]}", "Enrolled Ltd")
    enrolled = ledger.open_merchant_account(identity.merchant_id, EUR)
    try:
        with ca_asking(ec_bank, ledger) as bank:
            session = start_merchant(bank, identity)
            sig, kex = new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE)
            for account in (None, "acct-of-someone-else", enrolled.account_id.upper()):
                request, state = merchant_request(session, sig, kex, account=account)
                outcome = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
                assert outcome.status == REJECTED_BY_AGENT, account
            # Nothing was spent by the refusals: the same session and keys register.
            request, state = merchant_request(session, sig, kex, account=enrolled.account_id)
            outcome = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
        assert outcome.complete
        assert ledger.merchant_account(identity.merchant_id) == enrolled
    finally:
        ledger.close()
