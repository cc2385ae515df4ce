"""Settlement operations across crashes and gateway outages, against the real gateway."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest

from cli.merchant import operation_line
from clients.errors import OutcomeUnknown, TransportError
from clients.merchant import gateway_client, runtime
from clients.merchant.checkout import settled_amounts
from clients.merchant.config import AnswerMode
from clients.merchant.records import OperationKind, OperationState, OrderState
from clients.merchant.runtime import Merchant
from clients.merchant.store import MerchantStore
from setcore.auth_reversal import AuthRevRequestState, AuthRevResult
from setcore.cap_rev_or_cred import CapRevOrCredResult, CapRevOrCredState
from setcore.capture import CaptureResult, CaptureState
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setpay.v1 import gateway_admin_pb2
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import (
    JUST_PAST_MS,
    WELL_PAST_MS,
    GatewayOutage,
    restart,
)
from tests.clients.merchant.tampering_support import Exchange, TamperingGateway, gateway_hold
from tests.clients.test_purchase_flow import buy, offer
from tests.clocks import clocks_moved


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, nothing catches it."""


def _die_at_write(monkeypatch: pytest.MonkeyPatch, store: MerchantStore, number: int) -> None:
    """The process dies as it starts the store's ``number``-th write from now."""
    real = store._write
    count = itertools.count(1)

    @contextmanager
    def write() -> Iterator[object]:
        if next(count) == number:
            raise Crash
        with real() as conn:
            yield conn

    monkeypatch.setattr(store, "_write", write)


# Writes of a full reversal: the operation stored (1), then what the gateway's answer
# changes (2, and 3 if those changes take two writes).
@pytest.mark.parametrize("dies_at", [2, 3])
def test_a_crash_after_a_full_reversal_is_answered_does_not_stop_the_next_start(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    dies_at: int,
) -> None:
    merchant = make_merchant(f"m-revcrash-{dies_at}")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 700)).xid)
    directory = merchant.config.base_dir
    _die_at_write(monkeypatch, merchant.store, dies_at)
    with suppress(Crash):  # no third write: the answer was saved whole, nothing died
        merchant.settlement.reverse_authorization(xid, 0)
    monkeypatch.undo()
    merchant.close()
    # Never half: the order reversed with its operation still waiting, or the reverse.
    store = MerchantStore(directory / "merchant.db")
    try:
        (operation,) = store.operations(xid)
        reversed_ = store.order(xid).state is OrderState.REVERSED
        assert reversed_ == (operation.state is OperationState.SUCCEEDED)
    finally:
        store.close()

    again = restart(directory)
    try:
        assert again.store.order(xid).state is OrderState.REVERSED
        (operation,) = again.store.operations(xid)
        assert operation.kind is OperationKind.AUTH_REVERSAL
        assert operation.state is OperationState.SUCCEEDED and operation.result_amount == 0
    finally:
        again.close()


def test_resume_handles_each_operation_on_its_own(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One unanswered operation that cannot be finished now is logged; the others are
    still resumed, and the merchant still starts."""
    merchant = make_merchant("m-resume-each")
    wallet = make_wallet(merchant)
    reversed_xid = bytes.fromhex(buy(wallet, offer(merchant, 300)).xid)
    captured_xid = bytes.fromhex(buy(wallet, offer(merchant, 400)).xid)
    for action in (
        lambda: merchant.settlement.reverse_authorization(reversed_xid, 0),
        lambda: merchant.settlement.capture(captured_xid, 400),
    ):
        _die_at_write(monkeypatch, merchant.store, 2)  # stored, sent, answer not saved
        with pytest.raises(Crash):
            action()
        monkeypatch.undo()
    directory = merchant.config.base_dir
    merchant.close()

    def unverifiable(*_: object) -> object:
        raise ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "answer did not verify")

    monkeypatch.setattr(gateway_client.GatewayClient, "reverse_authorization", unverifiable)
    with caplog.at_level(logging.INFO, logger="setpay.merchant"):
        again = restart(directory)
    try:
        assert again.port
        (reversal,) = again.store.operations(reversed_xid)
        assert reversal.state is OperationState.SENT  # still waiting, for a later start
        assert again.store.order(reversed_xid).state is OrderState.AUTHORIZED
        (capture,) = again.store.operations(captured_xid)
        assert capture.state is OperationState.SUCCEEDED and capture.result_amount == 400
        failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(reversal.rrpid.hex()[:8] in m and "SIGNATURE" in m for m in failures)
    finally:
        again.close()


def test_a_capture_answered_to_its_command_and_to_a_starting_merchant_is_saved_once(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A merchant starting sends again every operation still sent, one a command is
    sending included: both get the gateway's one answer, and the command, saving it
    second, finds it saved and prints it (exit 0), not a refusal (exit 1)."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-capture-race")
    record = buy(make_wallet(merchant), offer(merchant, 1000))
    xid = bytes.fromhex(record.xid)
    starts: list[list[Any]] = []

    def start_meanwhile(response: Any, exchange: Exchange, _: TamperingGateway) -> None:
        starts.append(merchant.settlement.resume())  # the answer itself is untouched

    gateway.tamper("Capture", start_meanwhile)
    status, out, err = run_cli(
        ["merchant", "--dir", str(merchant.config.base_dir), "capture", record.xid[:8]], capsys
    )
    (capture,) = merchant.store.operations(xid)
    assert (status, err) == (0, "")
    assert f"capture {capture.rrpid.hex()[:8]} for order " in out and "succeeded, 1000" in out
    assert [[op.rrpid for op in resumed] for resumed in starts] == [[capture.rrpid]]
    assert gateway.sent("Capture") == [capture.request] * 2
    assert gateway_hold(bank, xid).transfers["capture"] == 1


# -- a gateway outage longer than the freshness window -----------------------------------


@contextmanager
def _capture_in_outage(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory, name: str
) -> Iterator[tuple[Merchant, bytes, GatewayOutage]]:
    """An authorized order of 1000 whose capture of 400 met the gateway down."""
    outage = GatewayOutage(bank)
    merchant = make_merchant(name, AnswerMode.AFTER_AUTHORIZATION, outage.target)
    try:
        xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
        assert merchant.store.order(xid).state is OrderState.AUTHORIZED
        outage.stop()
        with pytest.raises(OutcomeUnknown, match="outcome unknown, will retry") as caught:
            merchant.settlement.capture(xid, 400)
        assert isinstance(caught.value.cause, TransportError)
        (waiting,) = merchant.store.operations(xid)
        assert waiting.state is OperationState.SENT
        yield merchant, xid, outage
    finally:
        merchant.close()
        outage.release()


def _batch_totals(merchant: Merchant, batch_id: str) -> tuple[int, int]:
    """(captured total, number of captures) of a batch, as the gateway's ledger has it."""
    status = merchant.batches.administer(gateway_admin_pb2.BATCH_OPERATION_REQUEST, batch_id)
    summary = status.batch_status
    return summary.captured_total.amount, summary.capture_count


def test_a_capture_sent_in_a_long_outage_is_built_afresh_and_applied_once(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stored capture's date is too old once the gateway is back: the gateway refuses
    it (it never committed it), the merchant builds it again under a fresh RRPID."""
    with _capture_in_outage(bank, make_merchant, make_wallet, "m-stale") as (
        merchant, xid, outage,
    ):  # fmt: skip
        clocks_moved(monkeypatch, WELL_PAST_MS)
        outage.end(merchant)
        (fresh,) = merchant.settlement.resume()
        stale, again = merchant.store.operations(xid)
        assert again == fresh and fresh.rrpid != stale.rrpid
        assert stale.state is OperationState.FAILED
        assert stale.error_code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
        assert (fresh.kind, fresh.state) == (OperationKind.CAPTURE, OperationState.SUCCEEDED)
        assert fresh.result_amount == 400
        assert settled_amounts(merchant.store, xid) == (400, 0)
        # The rest is capturable, and the gateway holds each capture once.
        assert merchant.settlement.capture(xid).result_amount == 600
        assert _batch_totals(merchant, fresh.batch_id) == (1000, 2)


def test_a_serving_merchant_sends_a_waiting_capture_again_once_the_gateway_is_back(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not only at the next start: the serving merchant's own rounds find it."""
    monkeypatch.setattr(runtime, "RESUME_SECONDS", 0.05)
    monkeypatch.setattr(runtime, "RESUME_AFTER_MS", 0)
    with _capture_in_outage(bank, make_merchant, make_wallet, "m-rounds") as (
        merchant, xid, outage,
    ):  # fmt: skip
        outage.end(merchant)
        give_up = time.monotonic() + 20
        while merchant.store.operations(xid)[0].state is OperationState.SENT:
            assert time.monotonic() < give_up, "the waiting capture was never sent again"
            time.sleep(0.05)
        (capture,) = merchant.store.operations(xid)
        assert capture.state is OperationState.SUCCEEDED and capture.result_amount == 400
        assert _batch_totals(merchant, capture.batch_id) == (400, 1)


def test_the_rounds_leave_an_operation_a_command_may_still_be_sending(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    with _capture_in_outage(bank, make_merchant, make_wallet, "m-too-recent") as (
        merchant, xid, outage,
    ):  # fmt: skip
        outage.end(merchant)
        (waiting,) = merchant.store.operations(xid)
        assert merchant.settlement.resume(stored_before_ms=waiting.created_ms) == []
        assert merchant.store.operations(xid)[0].state is OperationState.SENT
        (answered,) = merchant.settlement.resume(stored_before_ms=waiting.created_ms + 1)
        assert answered.state is OperationState.SUCCEEDED


def test_a_capture_the_gateway_committed_is_answered_not_built_afresh(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Committed, its answer lost in a crash, sent again after the window: the gateway
    answers it from the bytes it stored, and nothing is captured twice."""
    merchant = make_merchant("m-stale-committed")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    _die_at_write(monkeypatch, merchant.store, 2)
    with pytest.raises(Crash):
        merchant.settlement.capture(xid, 400)
    monkeypatch.undo()
    clocks_moved(monkeypatch, WELL_PAST_MS)
    (answered,) = merchant.settlement.resume()
    assert answered.state is OperationState.SUCCEEDED and answered.result_amount == 400
    assert [op.rrpid for op in merchant.store.operations(xid)] == [answered.rrpid]
    assert _batch_totals(merchant, answered.batch_id) == (400, 1)


def test_a_capture_refused_as_only_just_too_old_waits(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Just past the window, an earlier sending could still be inside the gateway: the
    capture stays sent; a later resume, past the margin, builds it afresh."""
    with _capture_in_outage(bank, make_merchant, make_wallet, "m-edge") as (
        merchant, xid, outage,
    ):  # fmt: skip
        clocks_moved(monkeypatch, JUST_PAST_MS)
        outage.end(merchant)
        assert merchant.settlement.resume() == []
        (waiting,) = merchant.store.operations(xid)
        assert waiting.state is OperationState.SENT
        monkeypatch.undo()
        clocks_moved(monkeypatch, WELL_PAST_MS)
        merchant.settlement.resume()
        assert settled_amounts(merchant.store, xid) == (400, 0)


def test_a_request_the_gateway_refuses_ends_failed_with_its_code(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """A SET Error for a fresh request is final: the operation keeps the code and its
    amount no longer counts as taken."""
    merchant = make_merchant("m-set-error")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    with sqlite3.connect(merchant.config.store) as conn:
        conn.execute("UPDATE orders SET cap_token = ? WHERE xid = ?", (b"\x00" * 64, xid))
    refused = merchant.settlement.capture(xid, 1000)
    assert refused.state is OperationState.FAILED
    assert refused.error_code == ErrorCode.ERROR_CODE_DECODING_FAILURE
    assert "failed (ERROR_CODE_DECODING_FAILURE)" in operation_line(refused)
    assert merchant.settlement.resume() == []


def test_an_unspecified_gateway_failure_leaves_the_operation_sent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """UNSPECIFIED_FAILURE does not say the gateway did nothing: the capture stays sent,
    counted as taken, and a later resume asks again."""
    merchant = make_merchant("m-unspecified")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)

    def failing(*_: object) -> object:
        raise PeerError(ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE)

    monkeypatch.setattr(merchant.gateway, "capture", failing)
    with pytest.raises(OutcomeUnknown, match="UNSPECIFIED_FAILURE"):
        merchant.settlement.capture(xid, 400)
    (waiting,) = merchant.store.operations(xid)
    assert waiting.state is OperationState.SENT
    monkeypatch.undo()
    (answered,) = merchant.settlement.resume()
    assert answered.rrpid == waiting.rrpid and answered.state is OperationState.SUCCEEDED


def test_an_answer_settling_another_amount_is_not_recorded(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gateway answer (signature and names verified) that captures more than was asked,
    in another unit, or keeps another authorization than was asked, is refused: nothing
    counts as captured or re-authorized, the operation stays sent, and the gateway's true
    answer, asked again, settles it."""
    merchant = make_merchant("m-answer-amount")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    real_capture = merchant.gateway.capture

    def inflated(request: bytes, state: CaptureState) -> CaptureResult:
        result = real_capture(request, state)
        result.data.cap_res_items[0].cap_res_payload.cap_amt.amount = 900_000
        return result

    monkeypatch.setattr(merchant.gateway, "capture", inflated)
    with pytest.raises(OutcomeUnknown, match="900000"):
        merchant.settlement.capture(xid, 400)
    (waiting,) = merchant.store.operations(xid)
    assert waiting.state is OperationState.SENT
    assert settled_amounts(merchant.store, xid) == (0, 0)
    monkeypatch.undo()
    (answered,) = merchant.settlement.resume()
    assert answered.state is OperationState.SUCCEEDED and answered.result_amount == 400

    real_credit = merchant.gateway.credit

    def other_currency(request: bytes, state: CapRevOrCredState) -> CapRevOrCredResult:
        result = real_credit(request, state)
        result.data.items[0].actual_amt.currency = 840
        return result

    monkeypatch.setattr(merchant.gateway, "credit", other_currency)
    with pytest.raises(OutcomeUnknown, match="840"):
        merchant.settlement.refund(xid, 100)
    assert settled_amounts(merchant.store, xid) == (400, 0)
    monkeypatch.undo()
    merchant.settlement.resume()
    assert settled_amounts(merchant.store, xid) == (400, 100)

    other = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    real_reversal = merchant.gateway.reverse_authorization

    def keeps_more(request: bytes, state: AuthRevRequestState) -> AuthRevResult:
        result = real_reversal(request, state)
        result.data.auth_new_amt.amount = 5000
        return result

    monkeypatch.setattr(merchant.gateway, "reverse_authorization", keeps_more)
    with pytest.raises(OutcomeUnknown, match="5000"):
        merchant.settlement.reverse_authorization(other, 300)
    order = merchant.store.order(other)
    assert order.authorization is not None and order.authorization.amount.minor == 1000
    assert [op.state for op in merchant.store.operations(other)] == [OperationState.SENT]


def test_the_serving_rounds_keep_revocation_data_current(
    bank: RunningBank, make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merchant that only settles makes no purchase that would refresh its revocation
    data: each round of resends asks for it first, so answers are not checked against
    data gone stale."""
    merchant = make_merchant("m-rounds-fresh")
    asked = []
    real = merchant.revocation.ensure_fresh

    def ensure_fresh() -> None:
        asked.append(time.monotonic())
        real()

    monkeypatch.setattr(merchant.revocation, "ensure_fresh", ensure_fresh)
    merchant._resume_operations(stored_before_ms=0)
    assert asked, "a round of resends did not keep revocation data current"
