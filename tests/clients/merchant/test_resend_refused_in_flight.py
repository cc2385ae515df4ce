"""A resend refused for a reason the first sending passed is not final while that first
sending may still be decided at the gateway (``outcome.undecided``).

The gateway fences only a refusal as too old (``gateway.servicer``): a resend of the
same bytes refused by another check (its clock stepped back: MESSAGE_TOO_NEW; the
merchant's certificate expired since) is answered from the committed ledger rows alone,
and a first sending still queued behind a stalled writer is decided after it. Ended
failed, the merchant's checks would then allow the same capture or refund again. So the
operation stays sent until ``renewal.decidable_until``, and the next round of
``resume`` gets the stored answer. A command's own first sending refused still ends
failed at once (``test_protocol_negative_merchant`` and the other refusal tests).

The merchant's settlement deadline is shortened to one second, only to keep the tests
fast: in production the first sending must stall past the ten seconds it waits.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager

import pytest

from clients.errors import OutcomeUnknown
from clients.merchant import gateway_client, renewal
from clients.merchant.config import AnswerMode
from clients.merchant.records import Operation, OperationKind, OperationState
from gateway.cpu_turn import PROCESS_TURN
from gateway.ledger import StoreUnavailable
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.tampering_support import gateway_hold
from tests.clients.merchant.test_renewal_in_flight import _clocks
from tests.clients.test_purchase_flow import buy, offer

# How far the gateway's clock steps back: past the freshness window's allowance for a
# date ahead, so that the stored bytes' date is too new to it.
STEP_BACK_MS = 400_000
# An hour on first, so that the merchant's certificate is old enough at the gateway for
# the refusal of the step back to be MESSAGE_TOO_NEW, not EXPIRED_CERTIFICATE.
HOUR_MS = 3_600_000
WAITS = "but an earlier sending may still be decided: asked again after"
HOLD_SECONDS = 60.0
TOO_NEW = ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW


@pytest.fixture(autouse=True)
def _short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_client, "SETTLEMENT_DEADLINE_SECONDS", 1.0)


def _one(merchant_ops: list[Operation], kind: OperationKind) -> Operation:
    ops = [op for op in merchant_ops if op.kind is kind]
    assert len(ops) == 1, ops
    return ops[0]


@contextmanager
def _writer_held(bank: RunningBank) -> Iterator[sqlite3.Connection]:
    """Another connection holds the ledger's SQLite write lock, as a backup, an
    operator's tool or a stalled fsync would; ROLLBACK lets the writer go on."""
    path = bank.config.ledger_url().removeprefix("sqlite:")
    with closing(sqlite3.connect(path, isolation_level=None, check_same_thread=False)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield other
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")


class _HeldCapture:
    """The bank's ``ledger.capture``, its first call held until ``go`` (then applied, or
    raising ``fail``), as a decision queued behind a stalled writer is."""

    def __init__(self, bank: RunningBank, monkeypatch: pytest.MonkeyPatch) -> None:
        self._real = bank.bank.ledger.capture
        self.entered, self.go, self.ended = threading.Event(), threading.Event(), threading.Event()
        self.fail: BaseException | None = None
        self.results: list[object] = []
        monkeypatch.setattr(bank.bank.ledger, "capture", self._capture)

    def _capture(self, **kwargs: object) -> bytes:
        first = not self.entered.is_set()
        self.entered.set()
        try:
            if first:
                with PROCESS_TURN.aside():
                    assert self.go.wait(HOLD_SECONDS)
                if self.fail is not None:
                    raise self.fail
            out: bytes = self._real(**kwargs)  # type: ignore[arg-type]
            self.results.append(out)
            return out
        except BaseException as exc:
            self.results.append(exc)
            raise
        finally:
            if first:
                self.ended.set()


def test_capture_resend_refused_waits_for_the_first_sending(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant = make_merchant("m-resend-held", AnswerMode.AFTER_AUTHORIZATION)
    try:
        xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
        held = _HeldCapture(bank, monkeypatch)
        try:
            with pytest.raises(OutcomeUnknown):
                merchant.settlement.capture(xid, 400)
            assert held.entered.is_set()
            _clocks(monkeypatch, -STEP_BACK_MS, STEP_BACK_MS)  # the gateway's clock only
            with caplog.at_level(logging.WARNING, logger="setpay.merchant"):
                merchant.settlement.resume()  # the same bytes, refused
            capture = _one(merchant.store.operations(xid), OperationKind.CAPTURE)
            assert capture.state is OperationState.SENT, capture
            # Refused as not yet valid (the certificate's notBefore is ahead of the
            # gateway's clock): a check the first sending passed.
            assert any(WAITS in r.getMessage() for r in caplog.records), caplog.text
        finally:
            held.go.set()
        assert held.ended.wait(HOLD_SECONDS)
        assert isinstance(held.results[0], bytes)  # the first sending was applied
        merchant.settlement.resume()  # its stored answer, whatever the checks say now
        capture = _one(merchant.store.operations(xid), OperationKind.CAPTURE)
        assert capture.state is OperationState.SUCCEEDED, capture
        hold = gateway_hold(bank, xid)
        assert hold.captured == 400
        assert hold.transfers == {"authorization": 1, "capture": 1}
    finally:
        merchant.close()


def test_capture_resend_refused_behind_a_held_writer(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant = make_merchant("m-resend-writer", AnswerMode.AFTER_AUTHORIZATION)
    try:
        xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
        _clocks(monkeypatch, HOUR_MS - 1, 1)  # the merchant's store's clock too
        with _writer_held(bank):
            with pytest.raises(OutcomeUnknown):
                merchant.settlement.capture(xid, 400)
            _clocks(monkeypatch, HOUR_MS - STEP_BACK_MS, STEP_BACK_MS)
            merchant.settlement.resume()
            capture = _one(merchant.store.operations(xid), OperationKind.CAPTURE)
            assert capture.state is OperationState.SENT, capture
        _settled(bank, xid, "captured", 400)
        merchant.settlement.resume()
        capture = _one(merchant.store.operations(xid), OperationKind.CAPTURE)
        assert capture.state is OperationState.SUCCEEDED, capture
        hold = gateway_hold(bank, xid)
        assert hold.captured == 400
        assert hold.transfers == {"authorization": 1, "capture": 1}
    finally:
        merchant.close()


def test_refund_resend_refused_behind_a_held_writer(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant = make_merchant("m-resend-refund", AnswerMode.AFTER_AUTHORIZATION)
    try:
        xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
        assert merchant.settlement.capture(xid, 1000).state is OperationState.SUCCEEDED
        _clocks(monkeypatch, HOUR_MS - 1, 1)  # the merchant's store's clock too
        with _writer_held(bank):
            with pytest.raises(OutcomeUnknown):
                merchant.settlement.refund(xid, 300)
            _clocks(monkeypatch, HOUR_MS - STEP_BACK_MS, STEP_BACK_MS)
            merchant.settlement.resume()
            credit = _one(merchant.store.operations(xid), OperationKind.CREDIT)
            assert credit.state is OperationState.SENT, credit
        _settled(bank, xid, "credited", 300)
        merchant.settlement.resume()
        credit = _one(merchant.store.operations(xid), OperationKind.CREDIT)
        assert credit.state is OperationState.SUCCEEDED, credit
        hold = gateway_hold(bank, xid)
        assert hold.credited == 300
        assert hold.transfers == {"authorization": 1, "capture": 1, "credit": 1}
    finally:
        merchant.close()


def test_resend_refusal_is_final_once_no_earlier_sending_can_be_decided(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first sending ended undecided (the ledger's bound passed: nothing written);
    once the merchant's clock is past ``renewal.decidable_until`` the refusal ends it."""
    merchant = make_merchant("m-resend-final", AnswerMode.AFTER_AUTHORIZATION)
    try:
        xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
        held = _HeldCapture(bank, monkeypatch)
        held.fail = StoreUnavailable("undecided within the bound")
        try:
            with pytest.raises(OutcomeUnknown):
                merchant.settlement.capture(xid, 400)
        finally:
            held.go.set()
        assert held.ended.wait(HOLD_SECONDS)
        past = FRESHNESS_WINDOW_MS + renewal.RENEW_MARGIN_MS + 1_000
        assert past < STEP_BACK_MS + FRESHNESS_WINDOW_MS  # still too new to the gateway
        _clocks(monkeypatch, -STEP_BACK_MS, STEP_BACK_MS + past)
        merchant.settlement.resume()
        capture = _one(merchant.store.operations(xid), OperationKind.CAPTURE)
        assert capture.state is OperationState.FAILED, capture
        assert capture.error_code in (TOO_NEW, ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE)
        assert gateway_hold(bank, xid).captured == 0
    finally:
        merchant.close()


def _settled(bank: RunningBank, xid: bytes, field: str, amount: int) -> None:
    """Wait until the writer, let go, has applied the first sending."""
    deadline = time.monotonic() + HOLD_SECONDS
    while getattr(gateway_hold(bank, xid), field) != amount:
        assert time.monotonic() < deadline, f"{field} never reached {amount}"
        time.sleep(0.05)
